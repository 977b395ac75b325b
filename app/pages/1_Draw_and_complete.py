"""Draw the start of a sketch; the model completes it (or, for a VAE, redraws all of it)."""

import time

import streamlit as st

import common

common.page_setup("Draw & complete")
model = common.model_picker()

with st.sidebar:
    n = st.slider("Candidates", 1, common.MAX_CANDIDATES, 4, key="draw_n")
    temperature = st.slider("Temperature", 0.01, 1.0, 0.5, 0.01, key="draw_temperature",
                            help="Low: careful and typical. High: wild and varied.")

left, right = st.columns([2, 3])
with left:
    st.caption("Draw here, then ask the model to finish your drawing.")
    json_data = common.drawing_canvas("draw")
    buttons = st.columns(2)
    complete = buttons[0].button("Complete", type="primary", key="complete", width="stretch",
                                 disabled=model is None)
    reconstruct = buttons[1].button("Reconstruct", key="reconstruct", width="stretch",
                                    disabled=model is None or not model.hps.conditional,
                                    help="A VAE encodes the whole drawing and redraws it its way.")

if model is not None and (complete or reconstruct):
    with left:
        drawing = common.canvas_drawing(json_data, model.hps.max_seq_len)
    if drawing is not None:
        started = time.perf_counter()
        with right, st.spinner("The model is drawing…"):
            method = model.complete if complete else model.reconstruct
            results = common.at_model_size(model, method, drawing, n=n, temperature=temperature)
        if results is not None:
            st.session_state["draw_results"] = {
                "kind": "completion" if complete else "reconstruction",
                "drawings": results, "input": drawing,
                "prefix_len": len(drawing) if complete else 0,
                "seconds": time.perf_counter() - started,
            }

result = st.session_state.get("draw_results")
with right:
    if result:
        kind, count = result["kind"], len(result["drawings"])
        if kind == "reconstruction":
            st.caption("Your drawing:")
            common.svg_image(result["input"], size=160, highlight_rows=len(result["input"]))
        common.show_results(result["drawings"], key="draw", prefix_len=result["prefix_len"],
                            name=kind,
                            caption=f"{count} {kind}{'s' if count > 1 else ''} in "
                                    f"{result['seconds']:.2f} s"
                                    + ("; your strokes in red." if result["prefix_len"] else "."))
    else:
        st.info("Draw on the canvas, then press **Complete** (any model) or **Reconstruct** (VAE).")
