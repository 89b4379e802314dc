"""Derivation reports: every built-in cell in both languages, as .tex and as PDF.

Checks, in order: the .tex of every cell and language (titles, no SymPy artifacts, escaped
names, deterministic text); the PDFs (compiled once per session, two at a time) hold every
section title and a gradient for every parameter and rebuild byte-identically; the report's
summary is the kernel's backward, both as text and numerically; broken templates and LaTeX
errors give messages that name the file and line; ``_repr_latex_`` compiles.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from symbptt import Cell, derive, odot, sigmoid
from symbptt import pdf as pdfmod
from symbptt.codegen import kernel_module
from symbptt.loader import load
from symbptt.pdf import LatexError, build_pdf, first_error, have_latex
from symbptt.printers import numpy_code
from symbptt.render import kernel_context
from symbptt.report import (
    LANGS,
    SECTIONS,
    Printers,
    TemplateError,
    report_tex,
    section_titles,
    summary_adjoints,
    summary_context,
    summary_text,
    write_report,
)

CELLS = ("rnn", "lstm", "gru", "lstm_torch", "gru_torch")
ARTIFACTS = (r"\mapsto", "ElementwiseApplyFunction", r"\left(d", "Lambda", r"\circ", "MatMul",
             "MatAdd", "HadamardProduct", "OneMatrix", "ZeroMatrix", "__G__", r"\_\_G", "None")
NO_LATEX = "latexmk/pdflatex not installed (CI installs TeX Live: tools/setup.sh)"


def odd_cell() -> Cell:
    """A cell whose name, doc and meanings carry LaTeX special characters."""
    cell = Cell("odd_cell", "Doc with & and % and # and $ and ~ and ^.")
    (n_x,) = cell.dims("n_x")
    x = cell.input("x", n_x, "input_50% & more")
    h_prev = cell.state("h", n_x, "state #1")
    W = cell.weight("W_a", n_x, n_x, "weights {a}")
    cell.update("h", sigmoid(W @ x + h_prev))
    return cell


#: Every character issue 12 found to stop a PDF or break LaTeX, and a newline.
UNICODE_TEXT = "σ ⊙ ŷ é % $ # _ { } ~ ^ \\ and\na newline"


def unicode_cell() -> Cell:
    """A cell whose name, description and meanings hold Unicode and LaTeX's specials."""
    cell = Cell("σ_cell", f"Description: {UNICODE_TEXT}.")
    (n_x,) = cell.dims("n_x")
    x = cell.input("x", n_x, f"input {UNICODE_TEXT}")
    h_prev = cell.state("h", n_x, f"state {UNICODE_TEXT}")
    W = cell.weight("Wσ", n_x, n_x, f"weights {UNICODE_TEXT}")
    b = cell.bias("b", n_x, f"bias {UNICODE_TEXT}")
    z = cell.let("z", sigmoid(W @ x + b), f"gate {UNICODE_TEXT}")
    cell.update("h", odot(z, h_prev), f"next {UNICODE_TEXT}")
    return cell


@pytest.fixture(scope="module")
def derivations() -> dict:
    return {name: derive(load(name)) for name in CELLS}


@pytest.fixture(scope="module")
def texts(derivations) -> dict:
    return {(name, lang): report_tex(d, lang, f"derivations/{name}.py")
            for name, d in derivations.items() for lang in LANGS}


@pytest.fixture(scope="module")
def pdfs(texts, tmp_path_factory) -> dict:
    """Every report compiled once, two LaTeX runs at a time (plus the odd cell in English)."""
    if not have_latex():
        pytest.skip(NO_LATEX)
    out = tmp_path_factory.mktemp("reports")
    jobs = {}
    for (name, lang), tex in texts.items():
        path = out / f"{name}_{lang}.tex"
        path.write_text(tex, encoding="utf-8")
        jobs[(name, lang)] = path
    odd = out / "odd_cell_en.tex"
    odd.write_text(report_tex(derive(odd_cell())), encoding="utf-8")
    jobs[("odd_cell", "en")] = odd
    for lang in LANGS:
        uni = out / f"unicode_cell_{lang}.tex"
        uni.write_text(report_tex(derive(unicode_cell()), lang), encoding="utf-8")
        jobs[("unicode_cell", lang)] = uni
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(build_pdf, tex, tex.with_suffix(".pdf")) for key, tex in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def pdf_text(path: Path) -> str:
    """The PDF's text with ligatures unfolded and all whitespace removed (robust to layout)."""
    text = subprocess.run(["pdftotext", "-raw", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def plain(title: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", title))


# -- the .tex --------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", CELLS)
def test_every_cell_renders_with_every_section(texts, name, lang):
    tex = texts[(name, lang)]
    assert tex.startswith("%") and r"\pdftrailerid{}" in tex and r"\end{document}" in tex
    titles = section_titles(lang)
    assert set(titles) == set(SECTIONS)
    for title in titles.values():
        assert f"\\section{{{title}}}" in tex


@pytest.mark.parametrize("name", CELLS)
def test_no_sympy_artifacts_in_any_tex(texts, name):
    for lang in LANGS:
        tex = texts[(name, lang)]
        found = [a for a in ARTIFACTS if a in tex]
        assert not found, f"{name} ({lang}): SymPy artifacts {found}"


def test_languages_share_the_mathematics(texts):
    """The displayed mathematics is the same in both languages (but for the word "via")."""
    def displays(tex):
        tex = tex.replace(r"\text{vía ", r"\text{via ")
        return re.findall(r"\\begin\{(?:kept)?align\}.*?\\end\{(?:kept)?align\}", tex, flags=re.DOTALL)

    for name in CELLS:
        en, es = texts[(name, "en")], texts[(name, "es")]
        assert displays(en) == displays(es)
        assert "Retropropagación a través del tiempo" in es and "Backpropagation" not in es


def test_rendering_is_deterministic(derivations, texts):
    assert report_tex(derivations["gru"], "en", "derivations/gru.py") == texts[("gru", "en")]


def test_special_characters_are_escaped():
    tex = report_tex(derive(odd_cell()))
    assert r"\code{odd\_cell}" in tex
    assert r"Doc with \& and \% and \# and \$ and \textasciitilde{} and \^{}." in tex
    assert r"input\_50\% \& more" in tex and r"state \#1" in tex and r"weights \{a\}" in tex


def test_unknown_language_is_refused(derivations):
    with pytest.raises(ValueError, match="unknown report language 'fr'"):
        report_tex(derivations["rnn"], "fr")


# -- the summary is the kernel ---------------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
def test_summary_lists_the_kernel_statements(derivations, texts, name):
    d = derivations[name]
    lines = summary_text(d)
    assert lines == kernel_context(d)["backward_equations"]
    doc = kernel_module(name).__doc__
    for line in lines:
        assert f"    {line}\n" in doc
    rows = summary_context(d, Printers.of(d))
    assert " \\\\\n".join(rows) in texts[(name, "en")]


@pytest.mark.parametrize("name", CELLS)
def test_summary_evaluates_to_the_kernel_results(derivations, name):
    """The report's summary expressions, evaluated one step, equal the kernel's gradients."""
    d, kernel = derivations[name], kernel_module(name)
    rng = np.random.default_rng(7)
    dims = {k: 3 + i for i, k in enumerate(kernel.DIMS)}
    m = 4
    params = kernel.init_parameters(dims, rng)
    rows = kernel.rows(dims)
    x = rng.standard_normal((rows["x"], m, 1))
    init = {s: rng.standard_normal((rows[s], m)) for s in kernel.STATES}
    outputs, cache = kernel.forward(params, x, init)
    upstream = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    grads = kernel.backward(cache, upstream)

    env = {"np": np, "dtype": np.float64, "sigmoid": kernel.sigmoid, "softmax": kernel.softmax, "relu": kernel.relu,
           **dims, **params, "xt": x[:, :, 0], **{f"{s}_prev": v for s, v in init.items()}}
    for eq in d.forward:
        env[eq.name] = eval(numpy_code(eq.expr), env)  # our own generated code
    for name_, sym in d.incoming.items():
        env[sym.name] = upstream[name_][:, :, 0]
    for a, _summed in summary_adjoints(d):
        env[a.symbol.name] = eval(numpy_code(a.expr), env)
    expected = {"dxt": grads["dx"][:, :, 0], **{f"d{s}_prev": grads[f"d{s}0"] for s in kernel.STATES},
                **{f"d{p}": grads[f"d{p}"] for p in params}}
    for key, want in expected.items():
        np.testing.assert_allclose(env[key], want, rtol=1e-10, atol=1e-12, err_msg=f"{name}: {key}")


# -- PDFs ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", CELLS)
def test_pdf_holds_every_section_and_parameter_gradient(pdfs, derivations, name, lang):
    text = pdf_text(pdfs[(name, lang)])
    for key, title in section_titles(lang).items():
        assert plain(title) in text, f"{name} ({lang}): section {key!r} missing from the PDF"
    for p in derivations[name].cell.parameters:
        gradient = re.escape(f"∂{p.name.replace('_', '')}=")
        assert re.search(f"∂L/?{gradient}", text), f"{name} ({lang}): no gradient of {p.name}"


def test_pdf_of_escaped_names_compiles(pdfs):
    assert "odd_cell" in pdf_text(pdfs[("odd_cell", "en")])


@pytest.mark.parametrize("lang", LANGS)
def test_pdf_of_unicode_texts_compiles(pdfs, lang):
    """σ, ⊙, ŷ, é and LaTeX's specials in a name, description and meanings (issue 12)."""
    text = pdf_text(pdfs[("unicode_cell", lang)])
    for ch in "σ⊙é%$#_{}":
        assert ch in text, ch
    assert "ŷ" in unicodedata.normalize("NFC", text) or "yˆ" in text or "^y" in text


def test_unicode_texts_are_escaped_for_latex():
    from symbptt.notation import escape_math, escape_tex

    assert escape_tex("σ ⊙ ŷ é") == r"\ensuremath{\sigma} \ensuremath{\odot} \^{y} é"
    assert escape_tex("a\nb\tc") == "a b c"
    assert escape_tex("✓") == r"\texttt{[U+2713]}"
    assert escape_math("σW") == r"\sigma W"
    tex = report_tex(derive(unicode_cell()))
    body = tex[tex.index(r"\begin{document}"):]
    assert not set("σ⊙ŷ\n") & set(" ".join(line for line in body.splitlines()))


def test_rebuilt_pdf_is_byte_identical(pdfs, tmp_path):
    first = pdfs[("gru", "en")]
    again = build_pdf(first.with_suffix(".tex"), tmp_path / "gru.pdf")
    assert again.read_bytes() == first.read_bytes()


# -- errors ----------------------------------------------------------------------------


def broken_templates(tmp_path: Path, line: int, text: str) -> Path:
    """A copy of templates/ whose report.tex.j2 has ``text`` inserted as line ``line``."""
    from symbptt.render import TEMPLATES

    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    path = copy / "report.tex.j2"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(line - 1, text + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return copy


@pytest.mark.parametrize("text, message", [
    ("{% if %}", r"report\.tex\.j2:40: Expected an expression"),
    ("{{ no_such_name }}", r"report\.tex\.j2:40: UndefinedError: 'no_such_name' is undefined"),
])
def test_malformed_template_names_file_and_line(derivations, tmp_path, text, message):
    templates = broken_templates(tmp_path, 40, text)
    with pytest.raises(TemplateError, match=message):
        report_tex(derivations["rnn"], templates=templates)


def test_latex_error_names_tex_line_and_keeps_files(tmp_path):
    if not have_latex():
        pytest.skip(NO_LATEX)
    tex, pdf = tmp_path / "gru.tex", tmp_path / "gru.pdf"
    tex.write_text("\\documentclass{article}\n\\begin{document}\nfine\n\\undefinedmacro\n"
                   "\\end{document}\n", encoding="utf-8")
    pdf.write_bytes(b"%PDF- a good PDF from an earlier build")
    with pytest.raises(LatexError, match=r"^gru\.tex:4: Undefined control sequence"):
        build_pdf(tex, pdf)
    assert tex.exists()
    assert pdf.read_bytes() == b"%PDF- a good PDF from an earlier build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.pdf", "gru.tex"]


def test_first_error_reads_file_line_errors():
    log = ("This is pdfTeX\n(./gru.tex\n./gru.tex:123: Undefined control sequence.\n"
           "l.123 \\foo\n./gru.tex:200: Emergency stop.\n")
    assert first_error(log, "gru.tex") == "gru.tex:123: Undefined control sequence."
    assert first_error("! LaTeX Error: File `cancel.sty' not found.\n\nl.7 \\usepackage",
                       "gru.tex") == "gru.tex:7: LaTeX Error: File `cancel.sty' not found."


SMALL = "\\documentclass{article}\n\\begin{document}\nsmall\n\\end{document}\n"


def test_pdflatex_fallback_and_timeout(tmp_path, monkeypatch):
    """Without latexmk, pdflatex runs instead; a run past its timeout is a LatexError."""
    if not have_latex():
        pytest.skip(NO_LATEX)
    tex = tmp_path / "small.tex"
    tex.write_text(SMALL, encoding="utf-8")
    with pytest.raises(LatexError, match=r"^small\.tex: LaTeX did not finish within"):
        build_pdf(tex, tmp_path / "small.pdf", timeout=0.001)
    assert not (tmp_path / "small.pdf").exists()
    real_which = shutil.which
    monkeypatch.setattr(pdfmod.shutil, "which", lambda name: None if name == "latexmk" else real_which(name))
    assert build_pdf(tex, tmp_path / "small.pdf").read_bytes().startswith(b"%PDF")


def test_write_report_writes_tex_atomically(derivations, tmp_path):
    path = write_report(derivations["rnn"], tmp_path / "out" / "rnn.tex", lang="es")
    assert path.read_text(encoding="utf-8") == report_tex(derivations["rnn"], "es", "<cell rnn>")
    assert [p.name for p in path.parent.iterdir()] == ["rnn.tex"]


# -- notebooks -------------------------------------------------------------------------


def test_repr_latex_renders(derivations, tmp_path):
    """Cells and derivations show their equations in Jupyter, and that LaTeX compiles."""
    blocks = []
    for name, d in derivations.items():
        for block in (d.cell._repr_latex_(), d._repr_latex_()):
            assert block.startswith("$$\\begin{aligned}") and block.endswith("\\end{aligned}$$")
            assert not [a for a in ARTIFACTS if a in block], name
            blocks.append(block)
    assert r"\sum_{t}" in derivations["gru"]._repr_latex_()
    if not have_latex():
        pytest.skip(NO_LATEX)
    tex = tmp_path / "repr.tex"
    tex.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
                   + "\n\n".join(blocks) + "\n\\end{document}\n", encoding="utf-8")
    assert build_pdf(tex, tmp_path / "repr.pdf").stat().st_size > 0


@pytest.mark.parametrize("lang, phrase", [
    ("en", "per-unit vector, one factor per unit, broadcast over the batch"),
    ("es", "vector con un factor por unidad, replicado sobre el lote (broadcasting)"),
])
def test_vector_parameters_are_described(lang, phrase):
    """``cell.vector`` parameters (peepholes, IndRNN's u) have their line in the symbol table."""
    peephole = report_tex(derive(load("lstm_peephole")), lang)
    indrnn = report_tex(derive(load("indrnn")), lang)
    assert peephole.count(phrase) == 3 and indrnn.count(phrase) == 1
    if lang == "es":
        for words in ("mirilla (peephole) de la compuerta de olvido", "pesos recurrentes, uno por unidad",
                      "pesos de la entrada"):
            assert words in peephole + indrnn
        assert "peephole:" not in peephole and "one per unit" not in indrnn


#: Spanish a native reader stumbles on (issue 9): contractions a blind "a el" → "al" once
#: produced ("hastal", "maneral"), calques and the words the course notebook does not use.
SPANISH_SLIPS = (" a el ", " de el ", "hastal ", "maneral ", "instancial ", "multiplical ", " puerta",
                 "paso hacia atrás", "arrastre", "truncación", "difundido", "BPTT truncada",
                 "jacobiano de softmax", "que lo lee", "(one column)", "aplicados a las compuertas")


def test_spanish_reads_as_written_by_a_native_speaker(texts):
    """The Spanish reports avoid known slips and use the notebook's words (compuerta, truncado)."""
    for name in CELLS:
        es = texts[(name, "es")]
        found = [s for s in SPANISH_SLIPS if s in es]
        assert not found, f"{name}: {found}"
        assert "BPTT truncado" in es and "pasada hacia atrás" in es
        assert "compuerta" in es or name == "rnn"
        assert "Un paso toma la entrada" in es and "al estado siguiente" not in es


def test_dataflow_figure_shows_every_operation_and_the_backward_pass(texts):
    """Issue 9: ⊙, 1−z, + and the stacks are nodes; the backward figure reverses every arrow."""
    tex = texts[("gru", "en")]
    figure = tex[tex.index(r"\begin{figure}"):tex.index(r"\label{fig:diagram}")]
    for op in (r"{$\odot$}", r"{$1{-}$}", r"{$+$}", r"\mathbf{u}_{t}$\\[-1pt]{\scriptsize $[\cdot;\cdot]$}",
               r"\mathbf{s}_{t}$\\[-1pt]{\scriptsize $\odot$}"):
        assert op in figure, op
    forward = figure.count(r"\draw[->]")
    assert forward >= 15 and figure.count(r"\draw[<-, red!70!black]") == forward
    assert "label=" not in figure  # text only inside nodes: no arrow crosses a label


def test_figure_names_a_product_the_cell_named_for_print(texts):
    """gru_torch's r ⊙ h_n stays inside its equation; its print name s_t still labels the node."""
    tex = texts[("gru_torch", "es")]
    figure = tex[tex.index(r"\begin{figure}"):tex.index(r"\label{fig:diagram}")]
    assert r"{$\mathbf{s}_{t}$\\[-1pt]{\scriptsize $\odot$}}" in figure
    assert r"{$\delta \mathbf{s}_{t}$}" in figure
    assert (r"\mathbf{s}_{t} & n_{h} \times m & parte oculta tras la compuerta de reinicio, "
            r"$\mathbf{r}_{t} \odot \mathbf{h}_{n,t}$ (solo se nombra en la figura)") in tex


@pytest.mark.parametrize("name", CELLS + ("mgu", "indrnn", "lstm_peephole"))
def test_figure_arrows_pass_clear_of_the_nodes(derivations, name):
    """Each arrow bends, if it must, so that it passes no node it does not join."""
    from symbptt.report_figure import _Builder, _clearance, _layout, _route

    d = derivations[name] if name in derivations else derive(load(name))
    graph, sources, _ = _Builder(d, Printers.of(d).now).build()
    pos = _layout(graph, sources)
    for node, inputs in graph.inputs.items():
        for i in inputs:
            assert _clearance(graph, pos, i, node, *_route(graph, pos, i, node)) > 0, \
                (name, graph.text[i], graph.text[node])


def page_blank_fractions(pdf: Path) -> list[float]:
    """For each page, the share of the text block left blank below its last ink (gray render)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-gray", "-r", "30", str(pdf), f"{tmp}/p"], check=True)
        fractions = []
        for page in sorted(Path(tmp).glob("p*.pgm")):
            data = page.read_bytes()
            _, width, height, _, pixels = data.split(maxsplit=4)
            image = np.frombuffer(pixels[:int(width) * int(height)], np.uint8).reshape(int(height), int(width))
            margin = round(2.2 / 29.7 * int(height))  # the geometry margin of report.tex.j2
            bottom = int(height) - margin
            ink = np.nonzero((image[:bottom] < 200).any(axis=1))[0]
            last = ink.max() if len(ink) else margin
            fractions.append((bottom - last) / (bottom - margin))
    return fractions


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) not installed")
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", CELLS)
def test_no_page_is_mostly_blank(pdfs, name, lang):
    """Issue 9: no page but the last more than about a third blank, no lone figure page."""
    path = pdfs[(name, lang)]
    blank = page_blank_fractions(path)
    assert all(f <= 0.34 for f in blank[:-1]), [round(f, 2) for f in blank]
    for page in range(1, len(blank)):
        text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(path), "-"], check=True,
                              capture_output=True, text=True).stdout
        assert len([line for line in text.splitlines() if line.strip()]) >= 15, f"page {page} is nearly empty"


ORDER_CELL = '''from symbptt import Cell, odot, sigmoid
cell = Cell("order")
n_x, n_h = cell.dims("n_x", "n_h")
x = cell.input("x", n_x, "input")
h_prev = cell.state("h", n_h, "hidden state")
W = cell.weight("W", n_h, n_x)
U = cell.weight("U", n_h, n_h)
b = cell.bias("b", n_h)
z = cell.let("z", sigmoid({pre}))
cell.update("h", {update})
'''


def forward_rows(tex: str) -> list[str]:
    block = tex[tex.index(r"\begin{align}"):tex.index(r"\end{align}")]
    return [re.sub(r" \\label.*", "", row) for row in block.splitlines()[1:]]


def test_forward_equations_keep_the_order_of_the_cell_file(texts, tmp_path):
    """Issue 9: the report writes each forward sum's terms as the cell file does, not SymPy's order."""
    assert r"\mathbf{h}_{t} &= \mathbf{h}_{t-1} \odot \mathbf{z}_{t} + \left(\mathbf{1} - \mathbf{z}_{t}\right) " \
           r"\odot \tilde{\mathbf{h}}_{t}" in forward_rows(texts[("gru", "en")])
    assert (r"\mathbf{a}_{r,t} &= \mathbf{W}_{ir} \mathbf{x}_{t} + \mathbf{b}_{ir} + \mathbf{W}_{hr} "
            r"\mathbf{h}_{t-1} + \mathbf{b}_{hr}") in forward_rows(texts[("gru_torch", "es")])
    written = {}
    for pre, update in (("W @ x + U @ h_prev + b", "odot(z, h_prev) + x_h - z"),
                        ("b + U @ h_prev + W @ x", "x_h - z + odot(z, h_prev)")):
        path = tmp_path / "order.py"
        path.write_text(ORDER_CELL.format(pre=pre, update=update.replace("x_h", "tanh_h")).replace(
            "tanh_h", "h_prev"), encoding="utf-8")
        written[pre] = forward_rows(report_tex(derive(load(path)), "en"))
    first, second = written.values()
    assert first[0] == r"\mathbf{a}_{z,t} &= \mathbf{W} \mathbf{x}_{t} + \mathbf{U} \mathbf{h}_{t-1} + \mathbf{b}"
    assert second[0] == r"\mathbf{a}_{z,t} &= \mathbf{b} + \mathbf{U} \mathbf{h}_{t-1} + \mathbf{W} \mathbf{x}_{t}"
    assert first[2] == r"\mathbf{h}_{t} &= \mathbf{h}_{t-1} \odot \mathbf{z}_{t} + \mathbf{h}_{t-1} - \mathbf{z}_{t}"
    assert second[2] == r"\mathbf{h}_{t} &= \mathbf{h}_{t-1} - \mathbf{z}_{t} + \mathbf{h}_{t-1} \odot \mathbf{z}_{t}"
    namespace: dict = {}
    exec(ORDER_CELL.format(pre="W @ x + U @ h_prev + b", update="h_prev - z"), namespace)  # noqa: S102 - no source
    assert namespace["cell"].term_order == {"z": (), "h": ()}
    sympy_order = forward_rows(report_tex(derive(namespace["cell"]), "en"))
    assert sympy_order[0] == r"\mathbf{a}_{z,t} &= \mathbf{U} \mathbf{h}_{t-1} + \mathbf{W} \mathbf{x}_{t} + \mathbf{b}"
