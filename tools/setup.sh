#!/usr/bin/env bash
# Installs what symbptt needs on a fresh Debian machine: TeX Live for the PDF reports
# (from Debian's archive, only where pdflatex or latexmk is missing) and the package
# itself in editable mode (with nbformat, for notebook submissions). Pass --test to add the
# test extras (pytest, hypothesis, torch).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v latexmk >/dev/null || ! command -v pdflatex >/dev/null || ! command -v pdftotext >/dev/null \
   || ! kpsewhich tikz.sty >/dev/null 2>&1 || ! kpsewhich spanish.ldf >/dev/null 2>&1; then
    echo "symbptt setup: installing TeX Live from Debian's archive (about 300 MB)"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        texlive-latex-base texlive-latex-recommended texlive-fonts-recommended \
        texlive-pictures texlive-lang-spanish latexmk poppler-utils >/dev/null
fi

EXTRAS="[grade]"  # nbformat: notebooks as submissions
if [ "${1:-}" = "--test" ]; then EXTRAS="[test,grade]"; fi
python3 -m pip install -q --disable-pip-version-check -e ".${EXTRAS}"
echo "symbptt setup: done"
