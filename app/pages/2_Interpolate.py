"""Encode two drawings with a VAE and walk the latent path between them."""

import numpy as np
import streamlit as st

import common
import sketch_model
from sketch_model import render
from sketch_model.strokes import rescale

common.page_setup("Interpolate", "🔀")
model = common.model_picker(vae_only=True)

with st.sidebar:
    method = st.radio("Path", ["slerp", "linear"], key="interp_method", horizontal=True,
                      help="slerp follows the sphere where most of a Gaussian's mass lies.")
    steps = st.slider("Drawings in the strip, both ends included", 3, 12, 8, key="interp_steps")
    temperature = st.slider("Temperature", 0.01, 1.0, 0.1, 0.01, key="interp_temperature")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="interp_seed")

source = st.segmented_control("Drawings", ["Draw them", "Pick from a dataset"],
                              default="Draw them", key="interp_source", required=True)
pair = [None, None]
if source == "Draw them":
    columns = st.columns(2)
    for i, name in enumerate("AB"):
        with columns[i]:
            st.caption(f"Drawing {name}")
            pair[i] = common.drawing_canvas(f"interp_{name}", size=260)
else:
    label, data = common.dataset_picker("interp_data",
                                        max_seq_len=model.hps.max_seq_len if model else 250)
    if data is not None and data.test:
        columns = st.columns(2)
        for i, name in enumerate("AB"):
            index = columns[i].number_input(f"Test sketch for {name}", 0, len(data.test) - 1, i * 7,
                                            key=f"interp_index_{name}")
            pair[i] = data.test[index]
            with columns[i]:
                common.svg_image(pair[i], size=160, caption=data.labels["test"][index])

if st.button("Encode both", type="primary", key="interp_encode", disabled=model is None):
    if source == "Draw them":
        pair = [common.canvas_drawing(j, model.hps.max_seq_len) for j in pair]
        pair = [None if p is None else rescale(p, model.input_scale(common.CANVAS_SIZE))
                for p in pair]
    if all(p is not None for p in pair):
        z = common.attempt(model.encode_many, pair)
        if z is not None:
            st.session_state["interp"] = {"model": str(model.path), "z": z, "frames": {}}

state = st.session_state.get("interp")
if model is not None and state and state["model"] == str(model.path):
    za, zb = state["z"]

    def decoded(z: np.ndarray, tag: tuple) -> np.ndarray:
        """Decode with a fixed seed; remembered per session so slider moves stay quick."""
        key = (*tag, method, temperature, int(seed))
        if key not in state["frames"]:
            state["frames"][key] = common.attempt(model.decode, z, temperature=temperature,
                                                  seed=int(seed))
        return state["frames"][key]

    path = sketch_model.latent_path(za, zb, steps, method)
    strip = [decoded(z, ("strip", steps, i)) for i, z in enumerate(path)]
    if all(d is not None for d in strip):
        st.image(render.grid_svg(strip, columns=steps, cell=110,
                                 labels=[f"{t:.2f}" for t in np.linspace(0, 1, steps)]),
                 caption=f"{steps} points on the {method} path from A to B")
    slider_column, drawing_column = st.columns([3, 2], vertical_alignment="center")
    t = slider_column.slider("Position on the path from A to B", 0.0, 1.0, 0.5, 0.05, key="interp_t")
    fine = sketch_model.latent_path(za, zb, 21, method)
    drawing = decoded(fine[round(t * 20)], ("fine", round(t * 20)))
    if drawing is not None:
        with drawing_column.container(key="interp_point"):
            common.svg_image(drawing, size=260, caption=f"t = {t:.2f}")
        with drawing_column:
            common.save_menu(drawing, f"interpolation-{t:.2f}", key="interp_dl")
elif model is not None:
    st.info("Draw two sketches (or pick two from a dataset), then press **Encode both**.")
