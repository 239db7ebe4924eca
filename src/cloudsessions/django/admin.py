"""A user's sessions in the Django admin: listed, and revoked one by one or all at once.

Mix `UserSessionsAdminMixin` into the ModelAdmin of your user model; the user's change page
then has a "Sessions" button leading to a page that lists each session (device, network,
signed in, last active, expires) with a checkbox, "Revoke selected" and "Revoke all":

    # admin.py of one of your apps
    from django.contrib import admin
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import User

    from cloudsessions.django.admin import UserSessionsAdminMixin

    class SessionsUserAdmin(UserSessionsAdminMixin, UserAdmin):
        pass

    admin.site.unregister(User)
    admin.site.register(User, SessionsUserAdmin)

It needs "cloudsessions.django" in INSTALLED_APPS (for its templates). Only staff with the
change permission on users reach the page (the admin's own login and permission checks);
each revocation is logged in the user's admin history. The sessions are the store's
(`SessionStore.get_store()`), found by the user's primary key as django.contrib.auth records
it in the session: one index query to list, one conditional delete per revoked session, one
query and one batch delete for "Revoke all".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ..pages import HANDLE_FIELD, rows
from .engine import SessionStore

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[Any]
else:
    _Base = object


class UserSessionsAdminMixin(_Base):
    """Adds the "Sessions" page (and its button on the change page) to a user ModelAdmin."""

    #: The change form with the "Sessions" button; set your own (extending this one, or
    #: adding ``cloudsessions_sessions_url`` to its object tools) if you have one.
    change_form_template = "cloudsessions/admin/user_change_form.html"
    sessions_template = "cloudsessions/admin/user_sessions.html"

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.sessions_view)
        # Before the ModelAdmin's own: its catch-all "<path:object_id>/" would take it.
        own = path("<path:object_id>/sessions/", view, name="{}_{}_sessions".format(*info))
        return [own, *super().get_urls()]

    def sessions_url(self, obj: Model) -> str:
        info = self.admin_site.name, self.opts.app_label, self.opts.model_name
        return reverse("{}:{}_{}_sessions".format(*info), args=[quote(obj.pk)])

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and not add:
            context["cloudsessions_sessions_url"] = self.sessions_url(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def sessions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The user's sessions (GET), and "Revoke selected" / "Revoke all" (POST)."""
        user = self.get_object(request, unquote(object_id))
        if user is None:
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined, no-any-return]
                request, self.opts, object_id
            )
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        # The user id as django.contrib.auth's login() keeps it in the session.
        user_id = self.opts.pk.value_to_string(user)
        store = SessionStore.get_store()
        if request.method == "POST":
            action = request.POST.get("action")
            if action == "revoke":
                handles = request.POST.getlist(HANDLE_FIELD)
                count = sum(store.revoke(user_id, handle) for handle in handles)
            elif action == "revoke_all":
                count = store.delete_for_user(user_id)
            else:
                return HttpResponseBadRequest("unknown action")
            self._report(request, user, count)
            return HttpResponseRedirect(request.path)  # PRG: a reload does not post again
        current = getattr(request.session, "session_key", None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Sessions of {user}",
            "subtitle": None,
            "opts": self.opts,
            "original": user,
            "module_name": str(self.opts.verbose_name_plural).capitalize(),
            "rows": rows(store.for_user(user_id, current=current)),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.sessions_template, context)

    def _report(self, request: HttpRequest, user: Any, count: int) -> None:
        if count == 0:
            self.message_user(request, "No session was revoked.", messages.WARNING)
            return
        said = "1 session" if count == 1 else f"{count} sessions"
        self.message_user(request, f"Revoked {said} of {user}.", messages.SUCCESS)
        self.log_change(request, user, f"Revoked {said}.")
