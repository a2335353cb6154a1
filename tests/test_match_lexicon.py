"""The lexicon file parses, and its rewrites give title words."""

from consultant.match.lexicon import LEXICON_PATH, load_lexicon, parse_rules
from consultant.match.text import stem, tokenize


def test_lexicon_file_parses_and_is_large():
    lines = LEXICON_PATH.read_text(encoding="utf-8").splitlines()
    rules = parse_rules(lines)
    assert len(rules) >= 500


def rewrite(text):
    return " ".join(load_lexicon().rewrite(text)[0])


def test_abbreviations():
    assert rewrite("HTN") == "essential hypertension"
    assert "type 2 diabetes mellitus" in rewrite("DM2")
    assert "chronic kidney disease stage 3a" in rewrite("CKD 3a")
    assert rewrite("AAA") == "abdominal aortic aneurysm"
    assert "transient tachypnea of newborn" in rewrite("TTN")


def test_upper_only_abbreviations_leave_ordinary_words_alone():
    assert rewrite("AS") == "aortic stenosis"
    assert rewrite("as needed") == "as needed"


def test_lay_terms_and_laterality_inside_a_phrase():
    assert rewrite("frozen left shoulder") == "adhesive capsulitis of shoulder left"
    assert "clavicle fracture" in rewrite("collarbone broken")
    assert rewrite("shingles") == "zoster"


def test_icd9_wording():
    assert rewrite("osteoarthrosis") == "osteoarthritis"
    assert rewrite("decubitus ulcer") == "pressure ulcer"
    assert rewrite("not stated as uncontrolled") == ""


def test_stemming_folds_plurals_and_forms():
    assert stem("fractures") == "fracture"
    assert stem("diabetic") == stem("diabetes")
    assert tokenize("Kidneys") == ["kidney"]
