""" "Where you're signed in" for Django:

    path("account/sessions/", include("cloudsessions.django.urls")),

or, with options for the page, ``include(...)``'s extra arguments:

    path("account/sessions/", include("cloudsessions.django.urls"), {"back_url": "/"}),

("login_url" overrides settings.LOGIN_URL). The URL names are cloudsessions:signed_in,
cloudsessions:revoke and cloudsessions:revoke_others.
"""

from __future__ import annotations

from django.urls import path

from ..pages import REVOKE, REVOKE_OTHERS
from . import views

app_name = "cloudsessions"
urlpatterns = [
    path("", views.signed_in, name="signed_in"),
    path(REVOKE, views.revoke, name="revoke"),
    path(REVOKE_OTHERS, views.revoke_others, name="revoke_others"),
]
