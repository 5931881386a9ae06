"""`dvoinik demo`: the whole pipeline on texts shipped with the package, offline, on a CPU.

Two fictional authors with far-apart voices (see demo_texts/README.md): Варвара
Ключарёва, the target — long lyrical sentences, ё, semicolons, a village on a river — and
Семён Рубцов, the influence — clipped office dialogue, digits, no ё. The demo makes a
workspace, builds the corpus, trains the tiny built-in model from scratch, and continues
a neutral prompt with the originality guard on; each continuation is compared with both authors' training text by
character trigrams, so the output says whose voice it carries.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dvoinik.corpus.build import BuildResult, build_corpus, load_documents
from dvoinik.generation.copyindex import CopyIndex, open_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import load_checkpoint
from dvoinik.generation.variants import CopyScore, generate
from dvoinik.generation.wordindex import open_word_index
from dvoinik.runs import find_run, run_token_set
from dvoinik.training.loop import TrainObserver, TrainResult, train
from dvoinik.workspace import Workspace, WorkspaceError, add_sources, init_workspace, write_settings


@dataclass(frozen=True)
class DemoAuthor:
    name: str
    folder: str  # under demo_texts/
    role: str


AUTHORS = (
    DemoAuthor("Варвара Ключарёва", "kliuchareva", "target"),
    DemoAuthor("Семён Рубцов", "rubtsov", "influence"),
)
PROMPT = "В то утро она вышла из дома и"
RUN = "demo"
# Sized for a 2-core CPU: about 2.5 minutes of training, stopped early by the time budget on slower machines.
TRAIN_SETTINGS = {
    "base": "tiny", "method": "full", "vocab_size": 2000, "block_size": 128, "batch_size": 16,
    "learning_rate": 2e-3, "warmup_fraction": 0.05, "max_steps": 300, "save_every": 150, "eval_every": 50,
    "eval_blocks": 16, "log_every": 10, "time_budget_minutes": 3.0,
}
DECODING = decoding_for("nucleus", temperature=0.8, max_new_tokens=60, seed=7)
GUARD = 10  # no span of 10 tokens of the training texts is copied
VARIANTS = 3


@dataclass(frozen=True)
class Continuation:
    text: str
    similarity: dict[str, float]  # author -> cosine of character-trigram profiles with their training text
    copy: CopyScore | None = None  # the longest span found in the training texts

    @property
    def nearest(self) -> str:
        return max(self.similarity, key=self.similarity.__getitem__)


@dataclass
class DemoResult:
    workspace: Workspace
    corpus: BuildResult
    training: TrainResult
    prompt: str
    target: str
    continuations: list[Continuation]


def texts_folder() -> Path:
    return Path(str(resources.files("dvoinik") / "demo_texts"))


def create_demo_workspace(folder: Path) -> Workspace:
    """A new workspace in `folder` (absent or empty) with the sample texts copied into `folder/texts/`."""
    folder = folder.expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise WorkspaceError(f"{folder} already exists and is not empty; pass another folder: dvoinik demo DIR")
    texts = folder / "texts"
    for author in AUTHORS:
        shutil.copytree(texts_folder() / author.folder, texts / author.folder)
    ws = init_workspace(folder, name="Варвара Ключарёва (демо)")
    for author in AUTHORS:
        ws, _ = add_sources(ws, [texts / author.folder], author=author.name, role=author.role)
    return write_settings(ws, "train", TRAIN_SETTINGS)


def trigram_profile(text: str) -> Counter:
    text = " ".join(text.lower().split())
    return Counter(text[i : i + 3] for i in range(len(text) - 2))


def cosine(a: Counter, b: Counter) -> float:
    dot = sum(count * b[gram] for gram, count in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def voice_similarity(text: str, profiles: dict[str, Counter]) -> dict[str, float]:
    mine = trigram_profile(text)
    return {author: cosine(mine, profile) for author, profile in profiles.items()}


def run_demo(folder: Path, observer: TrainObserver | None = None, prompt: str = PROMPT) -> DemoResult:
    ws = create_demo_workspace(folder)
    corpus = build_corpus(ws)
    training = train(ws, run=RUN, observer=observer)
    index: CopyIndex = open_copy_index(run_token_set(ws, find_run(ws, RUN)))
    double = load_checkpoint(training.checkpoints[-1], index, words=open_word_index(ws.root))
    variants = generate(double, prompt, DECODING, n=VARIANTS, guard=GUARD).variants
    documents = load_documents(ws.corpus_dir)
    profiles = {a.name: trigram_profile(" ".join(d.text for d in documents if d.author == a.name and d.split == "train"))
                for a in AUTHORS}
    continuations = [Continuation(v.text, voice_similarity(v.text, profiles), v.copy) for v in variants]
    return DemoResult(ws, corpus, training, prompt, AUTHORS[0].name, continuations)
