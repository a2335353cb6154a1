"""Negation, uncertainty and history rules."""

from consultant.match.findings import split_clauses
from consultant.match.lexicon import load_lexicon


def clauses(text):
    return [(" ".join(c.words), c.negated, c.uncertain, c.history) for c in split_clauses(text, load_lexicon())]


def test_denies_and_no_negate_what_follows():
    out = clauses("Denies chest pain. Cough for two days.")
    assert ("chest pain", True, False, False) in out
    assert any(w.startswith("cough") and not neg for w, neg, _, _ in out)


def test_negation_cuts_a_clause():
    out = clauses("CT head showed no bleed")
    assert out[-1] == ("bleed", True, False, False)
    assert out[0][1] is False


def test_post_negation():
    out = clauses("pneumonia was ruled out")
    assert out[0][1] is True


def test_qualifiers_are_not_negations():
    out = clauses("epilepsy, not intractable")
    assert all(not neg for _, neg, _, _ in out)


def test_outpatient_uncertain_is_marked():
    assert clauses("probable pneumonia")[0][2] is True
    # inpatient wording codes uncertain diagnoses as if established
    assert clauses("admitted with probable pneumonia")[0][2] is False


def test_history():
    assert clauses("history of breast cancer")[0][3] is True
    assert clauses("66-year-old with hypertension")[0][3] is False


def test_comma_parts_that_only_qualify_join_the_part_before():
    out = clauses("Osteoarthrosis, localized, primary, lower leg")
    assert out == [("osteoarthritis primary knee", False, False, False)]
    assert len(clauses("Decubitus ulcer of heel, stage II")) == 1
    assert len(clauses("AAA, not ruptured")) == 1
    # a list of conditions stays a list
    assert len(clauses("DM2, HTN, CKD 3")) == 3


def test_durations_are_not_findings():
    out = clauses("Complains of cough and fever for three days")
    assert "three" not in out[0][0] and "days" not in out[0][0]


def test_negated_finding_after_a_subject_is_negated():
    out = clauses("She has never had a fracture.")
    assert ("fracture", True, False, False) in [(w.replace("a ", ""), n, u, h) for w, n, u, h in out]


def test_a_trigger_after_the_condition_negates_what_comes_before():
    out = clauses("Barrett's esophagus was ruled out on biopsy")
    assert len(out) == 1 and out[0][1] is True and "esophagus" in out[0][0]
    assert clauses("pyelonephritis not suspected")[0][1] is True
    # "normal" before the condition is not a negation
    assert clauses("Supervision of normal first pregnancy")[0][1] is False


def test_z_code_wording_keeps_its_own_suspected_and_versus():
    assert clauses("Carrier or suspected carrier of other specified bacterial diseases")[0][2] is False
    assert clauses("Graft-versus-host disease, unspecified")[0][2] is False
    assert clauses("pneumonia versus bronchitis")[0][2] is True


def test_stopped_and_finished_treatment_is_not_current():
    assert clauses("finished anticoagulation")[0][1] is True


def test_the_disease_a_vaccine_prevents_is_not_a_finding():
    assert clauses("vaccination against influenza") == [("encounter for immunization", False, False, False)]
    assert clauses("immunization for hepatitis B")[0][0] == "encounter for immunization"
    assert clauses("Vaccine for shingles. Has a cough.")[1][0].startswith("has a cough")
    # "immunization" without a prevented disease keeps its own wording (Z28: not carried out)
    assert clauses("Immunization not carried out because of patient refusal")[0][0] == "immunization"


def test_a_lasting_status_is_not_history():
    assert clauses("history of total knee replacement")[0][3] is False
    assert clauses("history of breast cancer")[0][3] is True


def test_a_vaccine_named_after_its_disease_is_not_that_disease():
    for text in ("flu vaccine", "tetanus booster", "covid vaccine", "hepatitis B vaccine"):
        assert clauses(text) == [("encounter for immunization", False, False, False)], text
    assert clauses("type 2 diabetes, flu shot today")[0][0].startswith("type 2 diabetes")


def test_an_organism_after_due_to_is_a_finding_of_its_own():
    assert [w for w, *_ in clauses("UTI due to E. coli")][1] == "escherichia coli"
    assert len(clauses("pain due to a fall")) == 1  # only an organism is split off


def test_what_a_test_found_is_a_clause_of_its_own():
    assert [w for w, *_ in clauses("Screening colonoscopy found a polyp in the sigmoid colon.")][1].endswith("colon")
    assert clauses("low platelet count, cause not found yet")[0][0].startswith("thrombocytopenia")


def test_dates_and_record_numbers_are_no_findings():
    assert not any(ch.isdigit() for words, *_ in clauses("seen 03/14/2024, MRN 12345678") for ch in words)
    assert "80 89" in clauses("Burn involving 80-89 percent of body surface")[0][0]  # a range is no date
    assert clauses("DOB 01/02/1960 type 2 diabetes")[0][0].startswith("type 2 diabetes")
    # a blood pressure is not a date: it says what it is, and a hypertensive's reading says nothing more
    assert clauses("BP 140/90, hypertension")[0][0] == "essential hypertension"
    assert clauses("BP 150/95 today")[0][0].startswith("elevated blood pressure reading")
    assert clauses("BP 84/50")[0][0] == "hypotension"
