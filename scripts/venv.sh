# Sourced by scripts/test and scripts/demo: make .venv with the best interpreter here.
#
# Which interpreter: CONSULTANT_PYTHON if set; else Debian's own python3.11 when its
# venv module and headers are there (the headers build the matcher's C extension);
# else python3 from PATH. Debian builds its interpreter with profile-guided and
# link-time optimisation; an interpreter built without them (pyenv's default build,
# python3 on PATH on these machines) spends about a quarter more CPU on the same
# work: docs/BENCHMARKS.md, "The interpreter".
#
# `make_venv tests` (scripts/test) also wants the standard library's email test
# messages (Debian's libpython3.11-testsuite), part of tests/test_hostile_input.py's
# corpus; scripts/test installs the Debian packages that are missing first. A .venv
# made with another interpreter is made again.

DEBIAN_PYTHON=/usr/bin/python3.11
STDLIB_TEST_MESSAGES=/usr/lib/python3.11/test/test_email/data

debian_python_ready() {  # [tests]
  [ -x "$DEBIAN_PYTHON" ] || return 1
  [ "${1:-}" != tests ] || [ -d "$STDLIB_TEST_MESSAGES" ] || return 1
  "$DEBIAN_PYTHON" - <<'PY' >/dev/null 2>&1
import ensurepip, os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
PY
}

make_venv() {  # [tests]
  local python want have
  if [ -n "${CONSULTANT_PYTHON:-}" ]; then
    python="$CONSULTANT_PYTHON"
  elif debian_python_ready "${1:-}"; then
    python="$DEBIAN_PYTHON"
  else
    python=python3
  fi
  want="$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
  have="$(readlink -f .venv/bin/python 2>/dev/null || true)"
  if [ -n "$have" ] && [ "$have" != "$want" ]; then
    echo ".venv was made with $have; making it again with $want" >&2
    rm -rf .venv
  fi
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
}
