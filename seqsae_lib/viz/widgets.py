"""Interactive widgets of the book (ipywidgets, imported only when a widget is built).

Introduced in chapter 4. ``import seqsae_lib`` never imports ipywidgets:
this module imports it inside each function, so the library works without it (``pip install ipywidgets``
or the ``book`` extra to use these). Every widget shows how long its last update took, measured, so a
reader sees the cost of each interaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from seqsae_lib.interpret import FeatureAtlas
    from seqsae_lib.steering import LiveSteering, Recommendations, SliderCalibration

__all__ = ["StaticWidget", "card_html", "feature_browser", "recommendations_html", "require_ipywidgets",
           "static_steering_html", "steering_widget"]


def require_ipywidgets() -> Any:
    """Import and return ``ipywidgets``, with an actionable message if it is missing.

    Introduced in chapter 4.
    """
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the widgets need ipywidgets: pip install ipywidgets (or seqsae[book])") from exc
    return ipywidgets


def _plain_text(widget: Any, text: str) -> Any:
    """Give ``widget`` a readable plain-text form (what a notebook shows before it runs), instead of its repr."""
    bundle = widget._repr_mimebundle_

    def _repr_mimebundle_(**kwargs: Any) -> Any:
        data = bundle(**kwargs)
        if isinstance(data, dict):
            data["text/plain"] = text
        return data

    widget._repr_mimebundle_ = _repr_mimebundle_
    return widget


def _html_table(frame: Any, columns: list[str], title: str) -> str:
    if frame is None or len(frame) == 0:
        return f"<b>{title}</b><p>(none)</p>"
    shown = frame[[c for c in columns if c in frame.columns]]
    return f"<b>{title}</b>" + shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)


def _bars(rows: Any, what: str, n: int) -> str:
    """Share where the latent fires vs base rate, as CSS bars (red: the latent, grey: all positions)."""
    import html

    if rows is None or len(rows) == 0:
        return f"<p>(no {what} data)</p>"
    out = [f"<b>{what}</b><table>"]
    for name, r in rows.head(n).iterrows():
        share, base = float(r["share"]), float(r["base_rate"])
        out.append(f"<tr><td>{html.escape(str(name))}</td><td style='width:14em'>"
                   f"<div style='background:#C44E52;height:0.6em;width:{100 * share:.0f}%'></div>"
                   f"<div style='background:#BBBBBB;height:0.6em;width:{100 * base:.0f}%'></div></td>"
                   f"<td>{share:.0%} vs {base:.0%}</td></tr>")
    return "".join(out) + "</table>"


def card_html(card: Any, n_items: int = 6) -> str:
    """A feature card as plain HTML: label, frequency, genre and decade bars, promoted and driving films.

    Introduced in chapter 4. The fast card of the feature browser (no
    figure to render); :func:`seqsae_lib.viz.plots.plot_feature_card` draws the same content as a figure.
    """
    import html

    def titles(frame: Any, n: int) -> str:
        if frame is None or len(frame) == 0 or "title" not in frame:
            return "-"
        return "; ".join(html.escape(str(t)) for t in frame["title"].head(n))

    freq = float(card.stats.get("frequency", 0.0))
    head = (f"<h4>Latent {card.latent}: {html.escape(card.label)}</h4><p>confidence {card.confidence:.2f}; "
            f"fires on {freq:.2%} of positions; evidence: {html.escape(card.evidence or '-')}</p>")
    genres = card.profile("genre:next").sort_values("share", ascending=False)
    decades = card.profile("decade:next").sort_index()
    panels = (f"<table><tr><td style='vertical-align:top'>{_bars(genres, 'next item genre', 8)}</td>"
              f"<td style='vertical-align:top'>{_bars(decades, 'next item decade', 10)}</td></tr></table>")
    items = (f"<p><b>Pushes up:</b> {titles(card.promoted, n_items)}<br><b>Pushes down:</b> "
             f"{titles(card.suppressed, 3)}<br><b>Switched on by watching:</b> {titles(card.driving, 3)}</p>")
    return head + panels + items


def feature_browser(atlas: "FeatureAtlas", latent: int | None = None, *, n_results: int = 30,
                    figures: bool = False) -> Any:
    """A browser over an SAE's latents: pick one by id, by label search or by genre, see its card.

    Introduced in chapter 4.

    Parameters
    ----------
    atlas : FeatureAtlas
        From :func:`seqsae_lib.interpret.atlas.build_atlas`.
    latent : int, optional
        Latent shown first (default: the first of :meth:`~seqsae_lib.interpret.atlas.FeatureAtlas.gallery`).
    n_results : int, default 30
        Latents listed for a search or a genre.
    figures : bool, default False
        Draw the matplotlib card (:func:`seqsae_lib.viz.plots.plot_feature_card`, about 0.5-1 s per update on a
        2-core CPU) instead of the HTML card (:func:`card_html`, a few milliseconds).

    Returns
    -------
    ipywidgets.VBox
        With attributes ``show(latent)`` (update programmatically; returns seconds taken), ``search``,
        ``genre``, ``choice`` (the controls), ``shown`` (the latent on the card) and ``last_seconds``. After
        every relisting (a genre or a search) the card shows the dropdown's current entry. Its plain-text form
        (shown by a notebook before it runs) is one sentence, not the widget's repr.
    """
    widgets = require_ipywidgets()
    import matplotlib.pyplot as plt
    from IPython.display import display  # ipywidgets depends on IPython

    from seqsae_lib.viz.plots import plot_feature_card

    search = widgets.Text(placeholder="e.g. horror, 1970s, women", description="Search label")
    genres = ["(any)"] + atlas.categories("genre:next")
    genre = widgets.Dropdown(options=genres, value="(any)", description="Genre")
    choice = widgets.Dropdown(options=[], description="Latent", layout=widgets.Layout(width="60%"))
    latent_id = widgets.BoundedIntText(min=0, max=atlas.d_sae - 1, description="Latent id")
    status = widgets.HTML()
    figure = widgets.Output()
    tables = widgets.HTML()
    state: dict[str, Any] = {"busy": False}

    def options(table: Any) -> list[tuple[str, int]]:
        return [(f"{j}: {row.label} ({row.confidence:.2f})", int(j)) for j, row in table.iterrows()]

    def show(j: int) -> float:
        start = time.perf_counter()
        card = atlas.card(int(j))
        if figures:
            fig = plot_feature_card(card)
            figure.clear_output(wait=True)
            with figure:
                display(fig)
            plt.close(fig)
            tables.value = ""
        else:
            tables.value = card_html(card)
        tables.value += _html_table(card.contexts, ["user_id", "history", "input", "next", "activation"],
                                    "Strongest contexts (one per user): last films watched, then the next one")
        seconds = time.perf_counter() - start
        browser.last_seconds, browser.shown = seconds, int(j)
        status.value = f"<small>latent {j}: evidence {card.evidence or '-'}; updated in {seconds * 1e3:.0f} ms</small>"
        return seconds

    def listing() -> list[tuple[str, int]]:
        if genre.value != "(any)":
            table = atlas.by_category(genre.value, n=n_results)
            if search.value.strip():  # the same matching as the search box alone (labels, evidence, decades)
                table = table[table.index.isin(atlas.search(search.value, n=atlas.d_sae).index)]
        else:
            table = atlas.search(search.value, n=n_results)
        return options(table) or [("(no latent matches)", -1)]

    def select(options_: list[tuple[str, int]] | None, value: int | None = None) -> None:
        """Set the dropdown's entries (and its entry, if given and listed) without drawing a card."""
        state["busy"] = True  # assigning options moves the value to the first entry
        try:
            if options_ is not None:
                choice.options = options_
            if value is not None and value in [j for _, j in choice.options]:
                choice.value = value
        finally:
            state["busy"] = False

    def relist(_: Any = None) -> None:
        select(listing())
        follow(choice.value)  # the card follows the dropdown's (new) entry

    def follow(j: Any) -> None:
        """Show latent ``j`` (the dropdown's entry) unless it is the placeholder or already shown."""
        if j is None or j < 0:
            status.value = f"<small>no latent matches; the card below is latent {browser.shown}</small>"
            return
        if latent_id.value != j:
            latent_id.value = j  # on_id draws the card
        elif browser.shown != j:
            show(j)

    def on_choice(change: Any) -> None:
        if not state["busy"]:
            follow(change["new"])

    def on_id(change: Any) -> None:
        select(None, change["new"])  # a typed id that is listed becomes the dropdown's entry too
        show(change["new"])

    search.observe(relist, names="value")
    genre.observe(relist, names="value")
    choice.observe(on_choice, names="value")
    latent_id.observe(on_id, names="value")
    browser = widgets.VBox([widgets.HBox([search, genre]), widgets.HBox([choice, latent_id]), status, figure,
                            tables])
    browser.show, browser.search, browser.genre, browser.choice = show, search, genre, choice
    browser.last_seconds, browser.shown = float("nan"), None
    first = latent if latent is not None else (atlas.gallery(1) or [0])[0]
    select(listing(), first)
    if latent_id.value != first:
        latent_id.value = first
    else:
        show(first)
    return _plain_text(browser, f"Feature browser over the {atlas.d_sae:,} latents of this SAE (search a label, pick a "
                                "genre, or type a latent id): run the notebook to use it (it needs a running kernel).")


def recommendations_html(rec: "Recommendations", concepts: list[str] | None = None) -> str:
    """HTML of a steered top-k: new items highlighted, the items that left, concept shares and overlap.

    Introduced in chapter 5. Plain HTML, so it renders in the built book too.
    """
    import html

    concepts = list(rec.shares.index) if concepts is None else concepts
    rows = []
    for _, r in rec.table.iterrows():
        was = "new" if r["new"] else (f"was {int(r['was_rank'])}" if r["was_rank"] != r["rank"] else "=")
        style = ' style="background:#e3f4e1"' if r["new"] else ""
        tags = ", ".join(c for c in concepts if c in rec.table and r[c] > 0)
        rows.append(f"<tr{style}><td>{int(r['rank'])}</td><td>{html.escape(str(r['title']))}</td>"
                    f"<td>{html.escape(str(r['genres']))}</td><td>{was}</td><td>{html.escape(tags)}</td></tr>")
    table = ("<table><thead><tr><th>#</th><th>recommended</th><th>genres</th><th>change</th><th>concepts</th>"
             "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    shares = ", ".join(f"{c} {rec.shares.loc[c, 'before']:.0%} → {rec.shares.loc[c, 'after']:.0%}"
                       for c in concepts if c in rec.shares.index)
    dropped = "; ".join(html.escape(str(t)) for t in rec.dropped["title"]) or "none"
    return (f"{table}<p><b>Concept share</b> (unsteered → steered): {shares}<br><b>Overlap</b> with the unsteered "
            f"list (Jaccard@{len(rec.table)}): {rec.jaccard:.2f}<br><b>Left the list:</b> {dropped}</p>")


def steering_widget(
    live: "LiveSteering",
    user_id: int | None = None,
    *,
    calibration: "SliderCalibration | None" = None,
    max_strength: float = 6.0,
    n_user_latents: int = 3,
    history: int = 8,
    n_explain: int = 3,
) -> Any:
    """Steer one user's recommendations with sliders: concepts, and the user's own most active features.

    Introduced in chapter 5.

    Parameters
    ----------
    live : LiveSteering
        The engine (:class:`seqsae_lib.steering.live.LiveSteering`): model, SAE, concept latents, user inputs.
    user_id : int, optional
        Original (MovieLens) user id shown first (default: the first user).
    calibration : SliderCalibration, optional
        From :func:`seqsae_lib.steering.calibration.calibrate_sliders`: the concept sliders (those it
        calibrated) then move a position in ``[-1, 1]`` whose ends are stated as the share of an average
        user's top-k, and each shows the share and NDCG cost its current position implies.
    max_strength : float, default 6.0
        Range ``[-max_strength, max_strength]`` of the uncalibrated sliders (the user's latents, and the
        concepts without ``calibration``), in state units along unit-norm decoder directions.
    n_user_latents : int, default 3
        Sliders for the user's most active latents at the last position.
    history : int, default 8
        Recent items shown.
    n_explain : int, default 3
        Supporting features listed when an item is picked under "Why" (exact decomposition of its score,
        :meth:`seqsae_lib.steering.live.LiveSteering.explain`; final capture point only).

    Returns
    -------
    ipywidgets.VBox
        With ``set_user(user_id)``, ``sliders`` (dict name -> slider), ``meanings`` (dict name -> the HTML
        beside a calibrated slider), ``update()`` (returns the :class:`~seqsae_lib.steering.live.Recommendations`)
        and ``last`` (the latest one). Its plain-text form (shown by a notebook before it runs) is one
        sentence, not the widget tree.

    Raises
    ------
    TypeError, ValueError
        A ``calibration`` that is not a SliderCalibration or calibrates sliders ``live`` does not have.
    """
    widgets = require_ipywidgets()
    import html

    from seqsae_lib.steering import SliderCalibration

    if calibration is not None and not isinstance(calibration, SliderCalibration):
        raise TypeError(f"calibration must be a SliderCalibration, got {type(calibration).__name__}")
    cal = dict(calibration or {})
    if set(cal) - set(live.slider_names):
        raise ValueError(f"calibration has sliders {sorted(set(cal) - set(live.slider_names))} that live lacks")
    user_box = widgets.BoundedIntText(description="User id", min=min(live.user_ids), max=max(live.user_ids))
    wide = {"style": {"description_width": "9em"}, "layout": widgets.Layout(width="28em")}
    concept_sliders = {name: widgets.FloatSlider(value=0.0, min=-1.0, max=1.0, step=0.05, description=name,
                                                 readout_format="+.2f", continuous_update=True, **wide)
                       if name in cal else
                       widgets.FloatSlider(value=0.0, min=-max_strength, max=max_strength, step=0.25,
                                           description=name, continuous_update=True, **wide)
                       for name in live.slider_names}
    meanings = {name: widgets.HTML(layout=widgets.Layout(width="34em")) for name in cal}
    latent_box = widgets.VBox()
    history_html, result_html, status = widgets.HTML(), widgets.HTML(), widgets.HTML()
    explain_pick = widgets.Dropdown(options=[], description="Why", layout=widgets.Layout(width="30em"))
    explanation_html = widgets.HTML()
    reset = widgets.Button(description="Reset sliders")
    panel: dict[str, Any] = {"user": 0, "latent_sliders": {}}

    def values() -> dict[str, float]:
        out = {name: s.value for name, s in concept_sliders.items() if s.value != 0.0 and name not in cal}
        out.update(calibration.strengths({n: concept_sliders[n].value for n in cal}) if cal else {})
        out.update({name: s.value for name, s in panel["latent_sliders"].items() if s.value != 0.0})
        return out

    def update(_: Any = None) -> Any:
        rec = live.recommend(panel["user"], values())
        result_html.value = recommendations_html(rec, live.slider_names)
        status.value = f"<small>updated in {rec.seconds * 1e3:.1f} ms</small>"
        for name, curve in cal.items():
            p, ref = concept_sliders[name].value, calibration.reference_ndcg
            op = "" if curve.operator == "SAE latents" else f"; {curve.operator}: {curve.note.split(';')[0]}"
            meanings[name].value = (
                f"<small>average user's top-{curve.k}: {curve.low:.0%} at the left end, {curve.unsteered:.0%} "
                f"unsteered, {curve.high:.0%} at the right end; here {curve.share(p):.0%}, NDCG@{curve.k} "
                f"{ref:.3f} → {ref - curve.cost(p):.3f}"
                f"{html.escape(op)}</small>")
        widget.last = rec
        panel["explaining"] = True
        previous = explain_pick.value
        explain_pick.options = [(f"{r['rank']}. {r['title']}", int(r["item"])) for _, r in rec.table.iterrows()]
        items = [int(i) for i in rec.table["item"]]
        explain_pick.value = previous if previous in items else items[0]  # keep the pick while it stays listed
        panel["explaining"] = False
        show_explanation()
        return rec

    def show_explanation(_: Any = None) -> None:
        if panel.get("explaining") or explain_pick.value is None or live.capture_point != "final":
            return
        e = live.explain(panel["user"], int(explain_pick.value), values())
        rows = e.contributions.head(n_explain)
        lab = rows["label"] if "label" in rows else rows["latent"].map(str)
        items = "".join(f"<li>{html.escape(str(x))} [latent {int(j)}]: {c:+.2f}</li>"
                        for x, j, c in zip(lab, rows["latent"], rows["contribution"]))
        opp = e.opposing(2)
        lab_o = opp["label"] if "label" in opp else opp["latent"].map(str)
        items += "".join(f"<li>held back by {html.escape(str(x))} [latent {int(j)}]: {c:+.2f}</li>"
                         for x, j, c in zip(lab_o, opp["latent"], opp["contribution"]))
        explanation_html.value = (f"<b>Why {html.escape(e.title)}?</b> score {e.score:.2f} = features "
                                  f"{e.contributions['contribution'].sum():+.2f} + bias {e.bias:+.2f} + SAE error "
                                  f"{e.error:+.2f}<ul>{items}</ul>")

    def set_user(uid: int) -> None:
        panel["user"] = live.user_index(uid)
        recent = live.seq_data.history(panel["user"], last=history)
        history_html.value = ("<b>Recently watched</b> (oldest first)" +
                              recent[["title", "year", "genres"]].to_html(index=False, border=0))
        sliders = {}
        for _, r in live.active_latents(panel["user"], n_user_latents).iterrows():
            label = html.escape(str(r.get("label", "")))
            slider = widgets.FloatSlider(value=0.0, min=-max_strength, max=max_strength, step=0.25,
                                         description=f"latent {int(r['latent'])}", continuous_update=True,
                                         style={"description_width": "9em"}, layout=widgets.Layout(width="28em"))
            slider.observe(update, names="value")
            sliders[f"latent:{int(r['latent'])}"] = (slider, widgets.HTML(f"<small>{label}</small>",
                                                                          layout=widgets.Layout(width="20em")))
        panel["latent_sliders"] = {k: v[0] for k, v in sliders.items()}
        latent_box.children = [widgets.HTML("<b>This user's most active features</b>")] + \
            [widgets.HBox(list(pair)) for pair in sliders.values()]
        update()

    def on_reset(_: Any) -> None:
        for s in [*concept_sliders.values(), *panel["latent_sliders"].values()]:
            s.unobserve(update, names="value")
            s.value = 0.0
            s.observe(update, names="value")
        update()

    for s in concept_sliders.values():
        s.observe(update, names="value")
    explain_pick.observe(show_explanation, names="value")
    user_box.observe(lambda change: set_user(change["new"]), names="value")
    reset.on_click(on_reset)
    head = "<b>Concepts</b> (right: more, left: fewer)"
    if cal:
        head += (f" — each slider's ends are the share of an average user's top-{live.k} reachable within an "
                 f"NDCG@{live.k} drop of {calibration.budget:g} (measured on {len(calibration.users)} users; "
                 "0 is the unsteered list; each slider's cost is measured alone)")
    rows = [widgets.HBox([s, meanings[n]]) if n in meanings else s for n, s in concept_sliders.items()]
    controls = widgets.VBox([widgets.HTML(head), *rows, latent_box, reset])
    # Controls above the list, not beside it: side by side, the sliders were squeezed to a few pixels.
    widget = widgets.VBox([widgets.HBox([user_box, status]), history_html, controls, result_html, explain_pick,
                           explanation_html])
    widget.set_user, widget.update, widget.sliders, widget.last = set_user, update, concept_sliders, None
    widget.meanings = meanings
    first = user_id if user_id is not None else int(live.seq_data.users["user_id"].iloc[0])
    user_box.value = first
    if panel["user"] != live.user_index(first) or widget.last is None:
        set_user(first)
    return _plain_text(widget, f"Steering widget for user {first} ({', '.join(live.slider_names)}): run the "
                               "notebook to use it (it needs a running kernel).")


_STATIC_CSS = """
.seqsae-ss { border: 1px solid #bbb; border-radius: 6px; padding: 0.6em 0.8em; margin: 0.5em 0; }
.seqsae-ss-head { display: flex; gap: 1em; align-items: baseline; flex-wrap: wrap; }
.seqsae-ss-row { display: flex; gap: 0.2em 0.6em; align-items: center; flex-wrap: wrap; margin: 0.1em 0 0.7em; }
.seqsae-ss-name { width: 8em; font-weight: 600; }
.seqsae-ss-row input[type=range] { width: 14em; }
.seqsae-ss-readout { width: 7em; font-family: monospace; }
.seqsae-ss-meaning { flex: 1 1 22em; }
.seqsae-ss-table { margin-top: 0.6em; }
.seqsae-ss-table td, .seqsae-ss-table th { padding: 0.1em 0.6em; }
.seqsae-ss-new td { background: #e3f4e1; color: #111; }
"""


@dataclass(frozen=True)
class StaticWidget:
    """A widget that runs in the browser without a kernel: HTML with its data and script inline.

    Introduced in chapter 5. Notebooks and the built book show :attr:`html`; the plain-text form (what a
    notebook shows before it is run) is one sentence.
    """

    html: str
    """The component: a container, the payload as inline JSON and the script (no file is fetched)."""
    payload_bytes: int
    """Size of the embedded payload (compact JSON), in bytes."""
    description: str
    """The plain-text form."""

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.description


def static_steering_html(payload: Mapping[str, Any]) -> StaticWidget:
    """The kernel-free steering widget: a user picker, concept sliders and the re-ranked top-k, in plain JavaScript.

    Introduced in chapter 5. ``payload`` comes from
    :func:`seqsae_lib.steering.static.export_static_steering`; the page re-ranks with the arithmetic of
    :func:`seqsae_lib.steering.static.static_top_k` (exact at the final capture point: steering there is a score
    bonus). Everything is inline (the payload as a JSON script element, the script from
    ``seqsae_lib/viz/static_steering.js``), so it works offline and from ``file://``. Like the kernel widget it marks
    new entries, lists the items that left, and shows each concept's share before and after, the overlap with the
    unsteered list and, for calibrated sliders, the average share and NDCG cost a position implies.

    Raises
    ------
    ValueError
        A payload of another format.
    """
    from seqsae_lib.steering.static import STATIC_FORMAT

    if not isinstance(payload, Mapping) or payload.get("format") != STATIC_FORMAT:
        raise ValueError(f"expected a payload of format {STATIC_FORMAT!r} from export_static_steering")
    data = json.dumps(payload, separators=(",", ":"))
    size = len(data.encode("utf-8"))
    # No "</" inside the script element (a title cannot close it); JSON reads "<\/" as "</".
    data = data.replace("</", "<\\/")
    uid = "seqsae-ss-" + hashlib.sha1(data.encode("utf-8")).hexdigest()[:10]
    script = resources.files("seqsae_lib.viz").joinpath("static_steering.js").read_text(encoding="utf-8")
    users = len(payload["users"])
    html = (f'<style>{_STATIC_CSS}</style>'
            f'<div class="seqsae-static-steering" id="{uid}"><p>This widget needs JavaScript: it re-ranks the '
            f'top-{payload["k"]} of {users} users in the browser.</p></div>'
            f'<script type="application/json" id="{uid}-data">{data}</script>'
            f'<script>{script}\nwindow.seqsaeStaticSteering(document.getElementById("{uid}"), '
            f'JSON.parse(document.getElementById("{uid}-data").textContent));</script>')
    names = ", ".join(s["name"] for s in payload["sliders"])
    description = (f"Steering widget for the browser ({users} users; sliders: {names}; payload "
                   f"{size / 1024:.0f} KiB): it runs in the built book, or here as HTML output in a trusted notebook.")
    return StaticWidget(html, size, description)
