# Shared by scripts/demo and scripts/test: find interpreters, make and refresh virtualenvs.
# shellcheck shell=bash

# find_python 3.13 -> path of a python3.13 (PATH, then pyenv's versions), or fail.
find_python() {
  local version=$1 candidate
  for candidate in "python$version" "$(pyenv root 2>/dev/null)/versions/$version"*/bin/"python$version" \
                   "$HOME/.pyenv/versions/$version"*/bin/"python$version"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: Python $version is needed (python$version on PATH or under pyenv)" >&2
  return 1
}

# ensure_venv DIR PYTHON PIP-ARGS... -> DIR holds a venv with the packages installed.
# Reinstalls only when the requirements or pyproject.toml changed since the last install.
ensure_venv() {
  local dir=$1 python=$2
  shift 2
  local stamp_want
  stamp_want="$("$python" --version) $* $(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating $dir with $("$python" --version)"
    "$python" -m venv "$dir"
  fi
  if [ "$(cat "$dir/.cloudsessions-stamp" 2>/dev/null)" != "$stamp_want" ]; then
    echo "==> installing into $dir: $*"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "$@"
    echo "$stamp_want" > "$dir/.cloudsessions-stamp"
  fi
}
