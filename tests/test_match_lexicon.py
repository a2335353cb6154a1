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


def test_second_pass_rules_apply_only_beside_their_context_word():
    # "finger" is a phalanx only in a fracture; "lower leg" is the knee only in a joint disorder
    assert "phalanx" in rewrite("broken finger")
    assert "phalanx" not in rewrite("finger pain")
    assert "knee" in rewrite("osteoarthrosis lower leg")
    assert "knee" not in rewrite("cellulitis lower leg")


def test_urinary_symptoms_beside_the_prostate_are_luts():
    assert "lower urinary tract symptoms" in rewrite("enlarged prostate with nocturia")
    assert "lower urinary tract symptoms" not in rewrite("nocturia")


def test_eponym_possessives_are_not_ordinary_words():
    assert stem("still's") == "stills" and stem("still") == "still"
    assert tokenize("Bell's palsy") == tokenize("bells palsy")


def test_no_phrase_is_defined_twice():
    # the first rule of a phrase silently wins, so a second one is a mistake
    seen = {}
    for rule in parse_rules(LEXICON_PATH.read_text(encoding="utf-8").splitlines()):
        key = (rule.phrase, rule.ctx)
        assert key not in seen, (rule, seen.get(key))
        seen[key] = rule


def test_hypertension_is_essential_unless_its_kind_is_named():
    assert rewrite("hypertension") == "essential hypertension"
    assert rewrite("ocular hypertension") == "ocular hypertension"
    assert rewrite("pulmonary hypertension") == "pulmonary hypertension"


def test_numbers_keep_their_axis():
    from consultant.match.text import is_compound

    toks = tokenize("type 1 diabetes with CKD stage 2, third trimester, 34 weeks")
    assert {"type1", "stage2", "trimester3", "week34"} <= set(toks)
    assert "stage1" not in toks and is_compound("stage3a") and not is_compound("stage")


def test_a_plural_in_the_text_matches_a_rule_written_in_the_singular():
    assert rewrite("fever blisters") == rewrite("fever blister") == "herpesviral vesicular dermatitis"
    # an abbreviation in capitals takes a plural "s" ("PEs", "UTIs"); a word that only looks like one does not
    assert rewrite("AS") == "aortic stenosis" and rewrite("PEs") == rewrite("PE")
    assert rewrite("pes planus") != rewrite("PE planus") and rewrite("Pes") == "pes"


def test_tokens_are_remembered_within_a_question_only() -> None:
    from consultant.match import text as text_module

    with text_module.tokens_remembered():
        first = text_module.tokenize("Type 2 diabetes, kidney stones")
        first.append("changed by the caller")  # each call gets its own list
        again = text_module.tokenize("Type 2 diabetes, kidney stones")
        assert again == text_module._tokenize("Type 2 diabetes, kidney stones") == [
            "type", "2", "diabetes", "kidney", "stone", "type2"]
        assert text_module._REMEMBERED.get() == {"Type 2 diabetes, kidney stones": tuple(again)}
    assert text_module._REMEMBERED.get() is None  # nothing of the question is kept after it


def test_a_possessive_matches_a_rule_written_without_it():
    assert rewrite("De Quervain's") == rewrite("de quervain") == "radial styloid tenosynovitis"
    assert rewrite("athlete's foot") == "tinea pedis"  # a rule written with the possessive still wins
