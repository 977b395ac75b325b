"""Browse a dataset's sketches by class, and see where a VAE puts its test set in latent space."""

import numpy as np
import plotly.express as px
import streamlit as st

import common
from sketch_model import render

common.page_setup("Dataset gallery & latent map", "🗺️")
model = common.model_picker(vae_only=False)
with st.sidebar:
    name, data = common.dataset_picker("gallery", max_seq_len=model.hps.max_seq_len if model else 1000)
if data is None:
    st.stop()

gallery, latent = st.tabs(["Gallery", "Latent map"])

with gallery:
    left, middle, right = st.columns(3)
    split = left.selectbox("Split", ["train", "valid", "test"], key="gallery_split")
    labels = data.labels[split]
    classes = sorted(set(labels))
    chosen = middle.selectbox("Class", ["all classes", *classes], key="gallery_class")
    indices = [i for i, label in enumerate(labels) if chosen in ("all classes", label)]
    per_page = 24
    pages = max(1, -(-len(indices) // per_page))
    page = right.number_input(f"Page (of {pages})", 1, pages, 1, key="gallery_page")
    shown = indices[(page - 1) * per_page: page * per_page]
    st.caption(f"{len(indices)} sketches in {split} ({name}); "
               f"{sum(data.dropped_too_long.values())} too long for the model were left out.")
    if shown:
        sketches = getattr(data, split)
        st.image(render.grid_svg([sketches[i] for i in shown], columns=8, cell=120,
                                 labels=[f"{labels[i]} #{i}" for i in shown]))
    else:
        st.info("No sketches here.")

with latent:
    if model is None or not model.hps.conditional:
        st.info("The latent map needs a VAE (conditional) model: pick one in the sidebar.")
    elif not data.test:
        st.info("This dataset has no test sketches.")
    else:
        count = st.slider("Test sketches to encode", 2, min(1000, len(data.test)),
                          min(200, len(data.test)), key="latent_count",
                          help="The bundled model encodes about 300 sketches a second on a 2-core CPU.")
        key = (str(model.path), name, count)
        if st.button("Encode and project", type="primary", key="latent_encode"):
            with st.spinner(f"Encoding {count} sketches…"):
                z = common.attempt(model.encode_many, data.test[:count])
            if z is not None:
                st.session_state["latent"] = (key, common.pca_2d(z))
        if st.session_state.get("latent", (None,))[0] == key:
            xy = st.session_state["latent"][1]
            map_col, drawing_col = st.columns([3, 1])
            figure = px.scatter(x=xy[:, 0], y=xy[:, 1], color=data.labels["test"][:count],
                                custom_data=[np.arange(count)], hover_name=data.labels["test"][:count],
                                labels={"x": "PC 1", "y": "PC 2", "color": "class"},
                                title="Encoded test set, PCA to 2-D: click a point")
            figure.update_traces(hovertemplate="%{hovertext} #%{customdata[0]}<extra></extra>")
            event = map_col.plotly_chart(figure, key="latent_map", on_select="rerun",
                                         selection_mode="points")
            points = event.selection.points if event else []
            with drawing_col:
                if points:
                    custom = points[0]["customdata"]  # {"0": index} (or [index])
                    index = int(next(iter(custom.values())) if isinstance(custom, dict) else custom[0])
                    with st.container(key="latent_drawing"):
                        common.svg_image(data.test[index], size=240,
                                         caption=f"{data.labels['test'][index]} #{index}")
                    common.save_menu(data.test[index], f"test-{index}", key="latent_dl")
                else:
                    st.caption("Click a point to see its drawing.")
