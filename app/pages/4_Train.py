"""Train a model in the background and watch its curves and samples as it learns."""

import streamlit as st

import common
import jobs

common.page_setup("Train", "🏋️")

SIZES = {  # decoder units, encoder units per direction, z size, mixture components
    "Tiny (minutes on a CPU)": (64, 32, 16, 5),
    "Small": (256, 128, 64, 10),
    "Paper (large, needs hours)": (512, 256, 128, 20),
}


with st.sidebar:
    st.header("Data")
    bundled = common.bundled_datasets()
    samples = common.quickdraw_categories()  # the bundled 25-drawing samples
    full = common.downloaded_categories()
    picked = st.multiselect("Bundled datasets", list(bundled), default=list(bundled)[:1],
                            key="train_bundled")
    picked_categories = st.multiselect(
        f"Quick, Draw! categories ({len(common.download.CATEGORIES)})",
        common.download.CATEGORIES, key="train_categories",
        format_func=lambda c: f"{c} · full" if c in full else f"{c} · sample of 25" if c in samples
        else f"{c} · to download",
        help="Type to search. Full: the category's 75,000 drawings, downloaded. A sample: the 25 "
             "bundled drawings, for a quick try.")
    missing = [c for c in picked_categories if c not in full]
    if missing and st.button(f"Download the full {', '.join(missing)}", key="train_download",
                             help="From the Quick, Draw! data set's public bucket into the "
                                  "download cache, as `python -m sketch_model data download`."):
        if common.download_categories(missing):
            st.session_state["train_downloaded"] = missing
            st.rerun()  # so that the labels, this button and the training set count the download
    if "train_downloaded" in st.session_state:
        st.success(f"Downloaded {', '.join(st.session_state.pop('train_downloaded'))}.")
    uploads = st.file_uploader("Your files (.npz or .ndjson)", type=["npz", "ndjson"],
                               accept_multiple_files=True, key="train_uploads")
    unavailable = [c for c in picked_categories if c not in full and c not in samples]
    if unavailable:
        st.warning(f"Not here yet: {', '.join(unavailable)}. Download them to train on them.")
    data = ([str(bundled[name]) for name in picked]
            + [str(full.get(c) or samples[c]) for c in picked_categories if c not in unavailable]
            + common.save_uploads(uploads))
    if data:
        sizes = common.attempt(common.load_dataset, tuple(data), 1000)
        if sizes is not None:
            st.caption(f"Training set: {len(sizes.train):,} drawings, {len(sizes.valid):,} for "
                       "validation" + (" (samples: a quick try, not a good model)"
                                       if any(c not in full for c in picked_categories) else "."))

    st.header("Model")
    conditional = st.toggle("VAE (encoder + decoder)", True, key="train_conditional",
                            help="Off: an unconditional decoder, which can only generate and complete.")
    cell = st.selectbox("Decoder cell", ["lstm", "layer_norm", "hyper"], key="train_cell")
    size = st.selectbox("Size", list(SIZES), key="train_size")
    dec, enc, z, mixtures = SIZES[size]

    st.header("Training")
    steps = st.number_input("Steps", 10, 1_000_000, 500, 10, key="train_steps")
    save_every = st.number_input("Checkpoint and validate every", 5, 100_000, 50, 5,
                                 key="train_save_every")
    with st.expander("More settings"):
        batch_size = st.select_slider("Batch size", [8, 16, 32, 50, 100], 32, key="train_batch")
        learning_rate = st.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3], 1e-3,
                                         key="train_lr")
        kl_weight = st.slider("KL weight", 0.0, 1.0, 0.5, 0.05, key="train_kl",
                              disabled=not conditional)
        max_seq_len = st.number_input("Longest sketch (points)", 10, 1000, 250, key="train_max_len")
        dropout = st.toggle("Recurrent dropout", True, key="train_dropout")
        name = st.text_input("Run name", placeholder="run-<date>-<time>", key="train_name")
    start = st.button("Start training", type="primary", key="train_start", width="stretch")

settings = {
    "conditional": conditional, "dec_model": cell, "dec_rnn_size": dec, "enc_rnn_size": enc,
    "z_size": z, "num_mixture": mixtures, "save_every": save_every, "batch_size": batch_size,
    "learning_rate": learning_rate, "kl_weight": kl_weight, "max_seq_len": max_seq_len,
    "use_recurrent_dropout": dropout,
}
if start:
    if not data:
        st.warning("Pick at least one dataset or upload a file first.")
    else:
        try:
            jobs.start(data, int(steps), settings, name=name or None)
        except jobs.JobRefused as err:
            st.error(str(err))


def show_job(was_active: bool) -> None:
    job = jobs.current_job()
    if job is None:
        st.info("No training job yet: choose the data and settings in the sidebar, then **Start**.")
        return
    if was_active and not job.active:
        st.rerun()  # finished: refresh the whole page (and every model picker)
    progress = job.step / job.steps if job.steps else 0.0
    st.progress(min(progress, 1.0), text=f"**{job.name}**: {job.state}, step {job.step} of "
                                         f"{job.steps or '?'}")
    if job.state == "running":
        st.button("Stop", key="train_stop", on_click=jobs.stop, args=(job,),
                  help="Saves a checkpoint, then ends the job.")
    if job.state == "failed":
        st.error(f"Training failed: {job.error}")
    elif job.state in ("finished", "stopped"):
        st.success(f"The model is saved in `{job.run_dir}` and appears in every page's model picker "
                   f"as **{job.name} (your run)**.")
    log = jobs.read_log(job.run_dir)
    if log.get("step"):
        with st.container(key="train_curves"):
            st.plotly_chart(jobs.curves(log), key="train_chart")
    elif job.active:
        st.caption("Waiting for the first logged step…")
    samples = job.run_dir / "samples.svg"
    if samples.is_file():
        st.image(samples.read_text(), caption="Samples from the latest checkpoint")


job = jobs.current_job()
active = job is not None and job.active
st.fragment(show_job, run_every=2.0 if active else None)(active)
