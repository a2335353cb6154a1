# Sourced by scripts/test and scripts/demo: make .venv with the best interpreter here.
#
# Which interpreter: CONSULTANT_PYTHON if set; else Debian's own python3.11 when its
# venv module and headers are there (the headers build the matcher's C extension);
# else python3 from PATH. Debian builds its interpreter with profile-guided and
# link-time optimisation; an interpreter built without them (pyenv's default build,
# python3 on PATH on these machines) spends about a quarter more CPU on the same
# work: docs/BENCHMARKS.md, "The interpreter".
#
# `make_venv [apt]`: with "apt" (scripts/test), Debian's python3.11-venv,
# python3.11-dev and libpython3.11-testsuite (the standard library's email test
# messages, part of tests/test_hostile_input.py's corpus) are installed first where
# /usr/bin/python3.11 lacks them. A .venv made with another interpreter is made again.

debian_python_ready() {
  /usr/bin/python3.11 - <<'PY' >/dev/null 2>&1
import ensurepip, os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
PY
}

pick_python() {
  if [ -n "${CONSULTANT_PYTHON:-}" ]; then
    echo "$CONSULTANT_PYTHON"
  elif [ -x /usr/bin/python3.11 ] && debian_python_ready; then
    echo /usr/bin/python3.11
  else
    echo python3
  fi
}

make_venv() {
  if [ "${1:-}" = apt ] && [ -z "${CONSULTANT_PYTHON:-}" ] && [ -x /usr/bin/python3.11 ] \
      && command -v apt-get >/dev/null 2>&1 \
      && { ! debian_python_ready || [ ! -d /usr/lib/python3.11/test/test_email/data ]; }; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    local packages=(python3.11-venv python3.11-dev libpython3.11-testsuite)
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 \
      || { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; } \
      || echo "could not install ${packages[*]}" >&2
    if [ ! -d /usr/lib/python3.11/test/test_email/data ]; then
      CONSULTANT_PYTHON=python3  # the tests need the standard library's test messages
    fi
  fi
  local python want have
  python="$(pick_python)"
  want="$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
  have="$(readlink -f .venv/bin/python 2>/dev/null || true)"
  if [ -n "$have" ] && [ "$have" != "$want" ]; then
    echo ".venv was made with $have; making it again with $want" >&2
    rm -rf .venv
  fi
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
}
