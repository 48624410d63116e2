"""Teaching mode: guided lessons on modality imbalance, each step a real, fast training run (no Streamlit here).

``presets`` (data knobs and run sizing), ``controls`` (what a learner can set), ``lessons`` (the lessons as
data), ``state`` (lesson state <-> URL), ``runs`` (run specs and the shared result cache), ``results`` and
``verdicts`` (the numbers and which predicted answer they support), ``embeddings`` (lesson 5's PCA).
"""

from mmviz.teach.lessons import LESSONS, Lesson, Question, Step, get_lesson, specs_for
from mmviz.teach.state import LessonState, parse_query

__all__ = ["LESSONS", "Lesson", "LessonState", "Question", "Step", "get_lesson", "parse_query", "specs_for"]
