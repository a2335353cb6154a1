"""The one compiled part: the matcher's scoring loop (consultant/match/_scoring.c).

Everything else is in pyproject.toml. -ffp-contract=off keeps every multiply and
add a separate IEEE operation, so the C loop rounds exactly as the Python
reference loop in tests/test_match_search.py does."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "consultant.match._scoring",
            sources=["consultant/match/_scoring.c"],
            extra_compile_args=["-O2", "-ffp-contract=off", "-Wall"],
        )
    ]
)
