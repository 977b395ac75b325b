"""Draw the start of a sketch; the model finishes it in place, on your drawing (or, for a VAE,
redraws all of it). Keep a continuation to draw on from there."""

import time

import streamlit as st

import common

common.page_setup("Draw & complete")
model = common.model_picker()

with st.sidebar:
    n = st.slider("Candidates", 1, common.MAX_CANDIDATES, 4, key="draw_n")
    temperature = st.slider("Temperature", 0.01, 1.0, 0.5, 0.01, key="draw_temperature",
                            help="Low: careful and typical. High: wild and varied.")
    live = st.toggle("Complete as I draw", key="draw_live",
                     help="After each stroke you finish, fresh candidates appear by themselves.")

left, right = st.columns(2)
with left:
    st.caption("Draw here; the model finishes your drawing in blue, in place.")
    json_data = common.drawing_canvas("draw")
    buttons = st.columns(2)
    complete = buttons[0].button("Complete", type="primary", key="complete", width="stretch",
                                 disabled=model is None)
    reconstruct = buttons[1].button("Reconstruct", key="reconstruct", width="stretch",
                                    disabled=model is None or not model.hps.conditional,
                                    help="A VAE encodes the whole drawing and redraws it its way.")

digest = common.drawing_digest(json_data)
result = st.session_state.get("draw_results")
if result and result["digest"] != digest:  # made from another drawing: not shown beside this one
    del st.session_state["draw_results"]
    result = None
has_strokes = bool((json_data or {}).get("objects"))
auto = live and has_strokes and result is None and model is not None

if model is not None and (complete or reconstruct or auto):
    with left:
        drawing = common.canvas_drawing(json_data, model.hps.max_seq_len)
    if drawing is not None:
        started = time.perf_counter()
        with right, st.spinner("The model is drawing…"):
            method = model.reconstruct if reconstruct else model.complete
            results = common.at_model_size(model, method, drawing, n=n, temperature=temperature)
        if results is not None:
            result = st.session_state["draw_results"] = {
                "kind": "reconstruction" if reconstruct else "completion", "digest": digest,
                "drawings": results, "input": drawing,
                "prefix_len": 0 if reconstruct else len(drawing),
                "seconds": time.perf_counter() - started,
            }
            st.session_state["draw_pick"] = 0

with right:
    if result:
        kind, drawings, prefix_len = result["kind"], result["drawings"], result["prefix_len"]
        pick = st.session_state.get("draw_pick") or 0
        pick = pick if pick < len(drawings) else 0
        shown = drawings[pick]
        with st.container(key="draw_shown", border=True):
            if kind == "completion":
                st.image(common.in_place_svg(shown, prefix_len), width=common.CANVAS_SIZE,
                         caption=f"#{pick + 1} of {len(drawings)}: your strokes in black, the "
                                 f"model's in blue ({result['seconds']:.2f} s)")
            else:
                common.svg_image(shown, size=common.CANVAS_SIZE,
                                 caption=f"#{pick + 1} of {len(drawings)}: the model's redrawing "
                                         f"of your drawing ({result['seconds']:.2f} s)")
            actions = st.columns(2)
            if kind == "completion":
                actions[0].button("Keep", key="draw_keep", type="primary", width="stretch",
                                  on_click=common.keep_on_canvas, args=("draw", shown, prefix_len),
                                  disabled=len(shown) <= prefix_len,
                                  help="Put this continuation on your canvas, to draw on from there.")
            with actions[1]:
                common.save_menu(shown, f"{kind}-{pick + 1}", prefix_len, key="draw_dl")
        if len(drawings) > 1:
            st.segmented_control("Candidate", range(len(drawings)), key="draw_pick",
                                 format_func=lambda i: f"#{i + 1}")
            strip = st.columns(len(drawings))
            for i, drawing in enumerate(drawings):
                with strip[i].container(key=f"draw_candidate_{i}"):
                    common.thumbnail(drawing, prefix_len)
        common.replay([shown], key=f"draw_{pick}", prefix_len=prefix_len)
    elif live:
        st.info("Draw a stroke: candidates appear when you lift the pen.")
    else:
        st.info("Draw on the canvas, then press **Complete** (any model) or **Reconstruct** (VAE).")
