from __future__ import annotations

import numpy as np
import pytest

from dvoinik.evaluation.openset import (
    FEATURES,
    CorpusForm,
    OutsiderDetector,
    auroc,
    corpus_form,
    fit_detector,
    is_verse,
    script_of,
)

PROSE = ("Он вышел на улицу и долго стоял у ворот, не зная, куда идти; потом махнул рукой и пошёл к реке.\n\n"
         "— Куда ты? — крикнула ему вслед сестра.\n\nНо он не обернулся.")
VERSE = ("Мороз и солнце; день чудесный!\nЕще ты дремлешь, друг прелестный —\nПора, красавица, проснись:\n"
         "Открой сомкнуты негой взоры\n\nНавстречу северной Авроры,\nЗвездою севера явись!\nВечор, ты помнишь, "
         "вьюга злилась,\nНа мутном небе мгла носилась")
ENGLISH = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness."


def test_script_and_verse_checks() -> None:
    assert script_of(PROSE) == "CYRILLIC" and script_of(ENGLISH) == "LATIN" and script_of("ab 12") is None
    assert is_verse(VERSE) and not is_verse(PROSE)
    form = corpus_form([PROSE, PROSE + "\n\n" + PROSE])
    assert form == CorpusForm("CYRILLIC", 0.0)
    assert form.mismatch(PROSE) is None
    assert "Latin script" in form.mismatch(ENGLISH) and form.mismatch(VERSE) == "verse, and the corpus is prose"
    assert CorpusForm("CYRILLIC", 1.0).mismatch(PROSE) == "prose, and the corpus is verse"


def test_auroc_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 60).round(1)  # rounded: ties too
    expected = roc_auc_score([1] * 40 + [0] * 60, np.concatenate([pos, neg]))
    assert auroc(pos, neg) == pytest.approx(expected)
    assert auroc(pos, neg[:0]) is None


def test_detector_holds_its_false_alarm_rate_per_length() -> None:
    rng = np.random.default_rng(1)
    rows, outsider, lengths, groups = [], [], [], []
    for group in range(4):
        for nominal in (100, 1000):
            for is_out in (False, True):
                n = 200
                x = rng.normal(0, 1, (n, len(FEATURES)))
                x[:, 0] += (1.5 if is_out else 0) * (2 if nominal == 1000 else 1)  # longer texts separate better
                x[:, FEATURES.index("length")] = np.log(nominal / 1000)
                rows.append(x)
                outsider += [is_out] * n
                lengths += [nominal] * n
                groups += [group] * n
    detector = fit_detector(np.vstack(rows), np.array(outsider), np.array(lengths), np.array(groups), 0.05)
    cal = detector.calibration
    assert cal.calibrated and cal.insiders == 1600 and cal.outsiders == 1600
    assert 0.03 <= cal.false_alarms <= 0.08 and cal.auroc > 0.8
    assert cal.by_length["1000"]["detected"] > cal.by_length["100"]["detected"]
    assert detector.thresholds[0] != detector.thresholds[1]  # one threshold per length
    again = OutsiderDetector.from_dict(detector.to_dict())
    x = np.vstack(rows)[:5]
    assert np.allclose(again.score(x), detector.score(x)) and np.allclose(again.threshold(x), detector.threshold(x))
