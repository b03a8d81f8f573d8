"""DVC stage `fit_head@HEAD` (a head of core.heads.HEAD_KINDS): a classifier on the fold embeddings, scored."""

from landslide_dvc.core.heads import check_head
from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.fit_head import HeadParams, run_fit_head
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.stage import head_argument, run_stage


def main() -> None:
    head = check_head(head_argument(__doc__))
    params = read_section(HeadParams, "head")
    n_splits = int(load_split(paths.NORMALIZED_TRAIN, with_images=False).attrs["n_splits"])
    plots = paths.head_plots_dir(head)
    metrics = run_fit_head(
        head,
        params,
        embedding_paths=[paths.fold_embeddings(k) for k in range(n_splits)],
        answers_path=paths.TEST_ANSWERS,
        out_predictions=paths.head_predictions(head),
        out_metrics=paths.head_metrics(head),
        out_confusion=plots / "confusion.json",
        out_pr=plots / "pr.json",
    )
    test = f", test F1 {metrics['test']['f1']:.4f}" if "test" in metrics else ""
    print(f"fit_head@{head}: CV F1 {metrics['cv']['f1']:.4f} at threshold {metrics['threshold']:.3f}{test}")


if __name__ == "__main__":
    run_stage("fit_head", main)
