"""DVC stage `explain`: UMAP decision maps (Fig. 6) and band-occlusion importance (Fig. 7)."""

from landslide_dvc.core.metrics import read_answers
from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.explain import ExplainParams, run_explain
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    params = read_section(ExplainParams, "explain")
    train = load_split(paths.NORMALIZED_TRAIN)
    test = load_split(paths.NORMALIZED_TEST, with_images=False)
    n_splits = int(train.attrs["n_splits"])
    importance = run_explain(
        params,
        train=train,
        model_paths=[paths.fold_model(k) for k in range(n_splits)],
        embeddings_path=paths.fold_embeddings(params.fold),
        answers=read_answers(paths.TEST_ANSWERS, test.ids),
        out_umap_fc=paths.EXPLAIN_DIR / "umap_fc.png",
        out_umap_svm=paths.EXPLAIN_DIR / "umap_svm.png",
        out_occlusion_json=paths.EXPLAIN_DIR / "occlusion.json",
        out_occlusion_png=paths.EXPLAIN_DIR / "occlusion.png",
    )
    top = sorted(importance, key=lambda r: -abs(float(r["drop_sum"])))[:4]
    print(
        "explain: bands whose occlusion changes P(landslide) most (share of the total effect; + lowers it): "
        + ", ".join(f"{r['band']} ({float(r['share']):+.0%})" for r in top)
    )


if __name__ == "__main__":
    run_stage("explain", main)
