"""sketch-rnn playground: the home page. Run with `streamlit run app/Home.py`."""

import streamlit as st

import common

common.page_setup("sketch-rnn playground", "🐑")

st.markdown(
    "Draw with a recurrent neural network: [sketch-rnn](https://arxiv.org/abs/1704.03477) "
    "(Ha & Eck, 2017) learns to draw from human sketches stroke by stroke. "
    "Everything runs on this machine, on the models bundled with the app and the ones you train."
)

pages = [
    ("pages/1_Draw_and_complete.py", "Draw & complete", ":material/draw:",
     "Start a drawing and let the model finish it, or have a VAE redraw it."),
    ("pages/2_Interpolate.py", "Interpolate", ":material/linear_scale:",
     "Encode two drawings and walk the latent space between them."),
    ("pages/3_Generate.py", "Generate", ":material/casino:", "New drawings from the model alone."),
    ("pages/4_Train.py", "Train", ":material/model_training:", "Train your own model in the background and watch it learn."),
    ("pages/5_Dataset_gallery.py", "Dataset gallery & latent map", ":material/scatter_plot:",
     "Browse the sketches of a dataset and see where a model puts them."),
]
for path, title, icon, text in pages:
    st.page_link(path, label=f"**{title}**: {text}", icon=icon)

st.subheader("Models")
models = common.list_models()
if models:
    st.markdown("\n".join(f"- {label}" for label in models))
else:
    st.warning(f"No models found in `{common.MODELS_DIR}`: train one on the Train page.")

st.caption(
    "Data: Aaron Koblin's Sheep Market drawings (CC BY-NC 4.0, © 2006 Aaron Koblin) and "
    "Google's Quick, Draw! data set (CC BY 4.0, Google Creative Lab)."
)
