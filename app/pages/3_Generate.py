"""New drawings from the model alone: a VAE's prior, or an unconditional decoder."""

import time

import streamlit as st

import common

common.page_setup("Generate", "🎲")
model = common.model_picker()

with st.sidebar:
    n = st.slider("Drawings", 1, common.MAX_CANDIDATES, 6, key="generate_n")
    temperature = st.slider("Temperature", 0.01, 1.0, 0.5, 0.01, key="generate_temperature")
    fixed = st.checkbox("Fixed seed", key="generate_fixed",
                        help="The same seed and settings give the same drawings.")
    seed = st.number_input("Seed", 0, 2**31 - 1, 42, key="generate_seed", disabled=not fixed)

if model is not None:
    source = "the prior of a VAE" if model.hps.conditional else "an unconditional model"
    st.caption(f"Sampling from {source}.")
    if st.button("Generate", type="primary", key="generate"):
        started = time.perf_counter()
        with st.spinner("The model is drawing…"):
            results = common.attempt(model.generate, n=n, temperature=temperature,
                                     seed=int(seed) if fixed else None)
        if results is not None:
            st.session_state["generate_results"] = (results, time.perf_counter() - started)

if "generate_results" in st.session_state:
    results, seconds = st.session_state["generate_results"]
    common.show_results(results, key="generate", name="generated",
                        caption=f"{len(results)} drawings in {seconds:.2f} s")
