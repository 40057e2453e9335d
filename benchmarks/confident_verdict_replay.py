"""What "no answer contradicts a confident expert score" changes on answers already recorded.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/confident_verdict_replay.py QUESTIONS_DIR ROW.jsonl [ROW.jsonl ...]

``riad eval qa --out OUT`` writes its question set to ``OUT/questions`` (``mmad.json`` and the images)
and each row's answers to ``OUT/answers/1-shot/<row>.jsonl``, with the debiased option probabilities
of every answer. The rule (``LatentConfig.follow_confident_verdict``) acts only in the decode: the
latent loop and the probabilities are the same with it or without it, and the answer becomes the most
probable option that does not contradict a settled expert score of >= 0.8 or <= 0.2
(``option_meaning.contradicting_options``, ``decode.allowed_best``). So a row recorded without the
rule ("+ expert prior") is replayed here: the expert's score of each image against its one-shot
template (the same call as the evaluation's), the rule applied to the recorded probabilities, and
the MMAD scores before and after, with every changed answer listed. Checked against a row run with
the rule (``--rows expert_prior,verdict``): the replay predicts the recorded "+ confident verdict"
answers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from riad_agent.eval.mmad import _open_image, _open_template, read_answers
from riad_agent.eval.mmad_data import load_mmad
from riad_agent.eval.mmad_scoring import score_answers
from riad_agent.expert import open_expert
from riad_agent.reasoning.config import LatentConfig
from riad_agent.reasoning.decode import allowed_best
from riad_agent.reasoning.option_meaning import contradicting_options
from riad_agent.schemas import MultipleChoiceQuestion
from riad_agent.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("questions", type=Path, help="the question set folder (OUT/questions)")
    parser.add_argument("rows", type=Path, nargs="+", help="answer files of rows run without the rule")
    args = parser.parse_args()
    torch.set_num_threads(2)
    items = load_mmad(args.questions)
    expert = open_expert(Settings())
    margin = LatentConfig().verdict_margin
    scores: dict[str, float] = {}
    for path in args.rows:
        answers = read_answers(path)
        replayed, changed = [], []
        for answer in answers:
            if answer.image not in scores:
                item = items[answer.image]
                query = _open_image(args.questions, answer.image)  # as the evaluation opens them
                template = _open_template(args.questions, item.similar_templates[0])
                scores[answer.image] = expert.analyse(query, [template]).score
            question = MultipleChoiceQuestion(text=answer.question, options=answer.options)
            excluded = frozenset(contradicting_options(question, scores[answer.image], margin))
            letter = answer.gpt_answer
            if excluded and answer.option_probabilities and letter in excluded:
                names = list(answer.options)
                probabilities = torch.tensor([answer.option_probabilities.get(n, 0.0) for n in names])
                letter = allowed_best(names, probabilities, excluded)
                changed.append((answer, letter, scores[answer.image]))
            replayed.append(answer.model_copy(update={"gpt_answer": letter}))
        before = score_answers(a.scored() for a in answers)
        after = score_answers(a.scored() for a in replayed)
        print(f"{path}: {len(answers)} answers, {len(changed)} changed by the rule")
        for name, row in before.rows.items():
            cells = [
                f"{column} {value:.1f} -> {after.rows[name][column]:.1f}"
                for column, value in row.items()
                if value is not None and after.rows[name][column] is not None
            ]
            print(f"  {name}: " + "; ".join(cells))
        for answer, letter, score in changed:
            right = {True: "right", False: "wrong"}
            print(
                f"  {answer.image} ({answer.question_type}, expert {score:.2f}): {answer.gpt_answer} "
                f"({right[answer.gpt_answer == answer.correct_answer]}) -> {letter} "
                f"({right[letter == answer.correct_answer]})"
            )


if __name__ == "__main__":
    main()
