"""Training of the builtin model: the projector (and LoRA on SmolLM2) on MMAD-style questions, on CPU.

Pipeline, top to bottom:

1. labelled training images (``riad_agent.question_sets.sources``, train splits only): synthetic parts with
   every defect kind, ELPV train cells, MVTec normal images (``examples.py``);
2. the vision expert scores each image against its reference pool (its [0, 1] prior map is the
   evidence channels), the frozen vision tower turns each into cells, once (``examples.py``);
3. each step draws questions (``riad_agent.question_sets.questions``, the seven MMAD subtasks, options shuffled),
   builds the very prompt the latent reasoner builds (same segments, same adapter layout), sometimes
   with retrieved-style knowledge, and sometimes with the suffix the latent loop produces (L latent
   embeddings near their initial value, then m query patches), then teaches the answer
   ``"<letter>. <option text><|im_end|>"`` (the letter weighs most) (``trainer.py``);
4. the projector and the LoRA deltas are saved in one safetensors file with a record of the run
   (``loop.py``).

Everything is seeded; the same command gives the same data, order and initialisation.
"""

from riad_agent.training.config import TrainConfig
from riad_agent.training.examples import expert_for_training, training_images
from riad_agent.training.loop import train

__all__ = ["TrainConfig", "expert_for_training", "train", "training_images"]
