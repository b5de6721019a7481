"""The `paper` preset is the paper (MUFIN_SPEC.md, Table 5), and where the paper is silent the authors' code: every
value the spec fixes, resolved through the runner's own parser into each stage's Params."""
from mufin_lib.config import discover_notebooks, params_from, resolve_parameters
from mufin_lib.stages import params_class


def _params(number: str, preset: str = "paper"):
    specs = discover_notebooks()
    final = resolve_parameters(specs, specs, preset, [])
    spec = next(s for s in specs if s.number == number)
    return params_from(params_class(number), {**spec.parameters, **final[spec.name]})


def _pipeline(preset: str) -> list[str]:
    from dataclasses import asdict

    from mufin_lib.pipeline import differences

    return differences({m: asdict(_params(n, preset)) for m, n in
                        (("module1", "02"), ("module2", "03"), ("module3", "04"), ("module4", "05"))})


def test_rows_name_the_pipeline_and_only_the_paper_preset_is_the_papers():
    """Stage 06 prints the paper's figure beside the paper-fusion row only where this list is empty."""
    assert _pipeline("paper") == []
    assert _pipeline("smoke") == ["InfoNCE", "Module I's best epoch", "fixed top negatives", "Module IV's best epoch"]
    assert _pipeline("hm") == ["InfoNCE", "Module I's best epoch", "votes in the shortlist",
                               "no negatives within cosine 0.9 of a positive", "5 frozen-feature epochs", "Module IV's best epoch"]


def test_module1_as_the_paper():
    p = _params("02")
    assert (p.loss, p.margin, p.num_negatives, p.temperature) == ("triplet", 0.2, 10, 0.1)  # spec §4
    assert (p.positives, p.negatives) == ("hardest", "hardest")
    assert (p.epochs, p.lr, p.encoder_lr, p.batch_size, p.warmup_steps, p.schedule) == (200, 2e-4, 2e-4, 1024, 1000, "cosine")
    assert (p.cluster_after, p.recluster_every, p.cluster_leaf, p.D) == (20, 5, 32, 192)
    assert not p.freeze_encoders and p.compare_modalities == ""  # encoders trained; no 200-epoch text twin
    assert p.self_attention and not p.select_epoch  # A_S; the last epoch kept
    assert (p.text_encoder, p.image_encoder) == ("sentence-transformers/msmarco-distilbert-base-v4", "vit_base_patch32_224")


def test_modules2_3_as_the_paper():
    p2, p3 = _params("03"), _params("04")
    assert (p2.mode, p2.index, p2.M, p2.ef_construction, p2.ef_search) == ("bag", "hnsw", 100, 300, 300)  # P-I-bag
    assert (p3.shortlist, p3.augment) == (300, "none")  # the index alone


def test_module4_and_fusion_as_the_paper():
    p = _params("05")
    assert (p.positives, p.negatives, p.loss, p.margin) == (2, 12, "cosine_embedding", 0.5)  # spec §7
    assert p.negative_sampling == "rank"  # 12 hard negatives drawn from the shortlist each step, not a fixed top 12
    assert (p.epochs, p.lr, p.encoder_lr, p.batch_size, p.train_encoder) == (20, 5e-5, 5e-5, 200, True)
    assert (p.combiner, p.select_epoch) == ("cross_attention", False)  # A_C; the last epoch, as the paper
    e = _params("06")
    assert (e.votes, e.prior, e.frequency_bins) == (False, False, "")  # the paper's score: no added terms
