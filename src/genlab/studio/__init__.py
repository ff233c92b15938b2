"""genlab studio: a web UI that looks inside the user's own runs (Gradio, the ``studio`` extra).

Pages, each over the runs under one folder (RUNS_DIR):

- **Runs**: every run, its resolved config, training and validation curves (metrics.jsonl), its
  results; two runs' curves on one plot.
- **Text** (gpt): a prompt and sampling controls; the text coloured by each token's probability,
  a chosen token's alternatives and entropy; the next-token distribution at several temperatures.
- **Attention** (gpt, bert): every layer's and head's weights from the eager reference path, a
  head view in the manner of BertViz (hover a token, see where it attends).
- **Projector**: embeddings of a run (VAE latents, CNN features, GPT token embeddings) or of a
  text file (bert, minilm) projected by PCA, t-SNE or UMAP to 2-D or 3-D; nearest neighbours;
  k-means / GMM with NMI and ARI against the labels (:mod:`genlab.eval.clustering`).
- **Images** (vae, gan): latent sliders decoded live, interpolation, sample grids by seed,
  reconstructions, -ELBO histograms per class for a run trained without one class.
- **CNN**: the feature maps of every stage for a test or uploaded image, and a layered 3-D view.

``genlab studio RUNS_DIR`` serves it alone; ``genlab serve RUN --studio RUNS_DIR`` mounts it at
``/studio`` beside the API. Gradio is imported by :mod:`genlab.studio.app` only, which sets
``GRADIO_ANALYTICS_ENABLED=False`` first (the studio makes no network calls).
"""
