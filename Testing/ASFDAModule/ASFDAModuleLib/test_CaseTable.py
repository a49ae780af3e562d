"""The case table model: rows from the contract's Case JSON, sorting, status and the suggested highlight."""

from __future__ import annotations

from ASFDAModuleLib.BackendTypes import CaseStatus, Ranking
from ASFDAModuleLib.CaseTable import NOT_SCORED, CaseColumn, CaseTableModel


def caseJson(caseId, name, status="unlabelled", dkd=None, asd=None, score=None, rank=None, version="v2"):
    return {
        "id": caseId,
        "name": name,
        "source_path": f"/data/{name}.nii.gz",
        "status": status,
        "dkd": dkd,
        "asd": asd,
        "score": score,
        "rank": rank,
        "model_version": version if score is not None else None,
        "last_served": None,
    }


def ranking():
    return Ranking.fromJson(
        {
            "model_version": "v2",
            "round": 2,
            "next": "c",
            "cases": [
                caseJson("c", "Case C", "suggested", 0.41, 0.73, 0.91, 1),
                caseJson("a", "Case A", "unlabelled", 0.12, 0.55, 0.64, 2),
                caseJson("b", "case B", "labelled", 0.33, 0.21, 0.30, 3, version="v1"),
                caseJson("d", "Case D", "pseudo_labelled"),
            ],
        }
    )


def test_rows_follow_the_rank_and_show_scores_status_and_model_version():
    model = CaseTableModel()
    model.setRanking(ranking())

    rows = model.rows()

    assert [column.title for column in model.columns] == [
        "Case",
        "Status",
        "DKD",
        "ASD",
        "Score",
        "Rank",
        "Model version",
    ]
    assert [row.caseId for row in rows] == ["c", "a", "b", "d"]
    assert rows[0].cells == ("Case C", "suggested", "0.410", "0.730", "0.910", "1", "v2")
    assert rows[3].cells == (
        "Case D",
        "pseudo-labelled",
        NOT_SCORED,
        NOT_SCORED,
        NOT_SCORED,
        NOT_SCORED,
        NOT_SCORED,
    )
    assert rows[2].status is CaseStatus.LABELLED


def test_the_suggested_next_case_is_highlighted_and_stale_scores_are_marked():
    model = CaseTableModel()
    model.setRanking(ranking())

    rows = {row.caseId: row for row in model.rows()}

    assert [caseId for caseId, row in rows.items() if row.suggested] == ["c"]
    assert model.suggestedCase().id == "c"
    assert rows["b"].stale and not rows["a"].stale and not rows["d"].stale


def test_without_a_next_case_the_suggested_status_is_highlighted():
    model = CaseTableModel()
    model.setCases(ranking().cases, nextCaseId=None)

    assert [row.caseId for row in model.rows() if row.suggested] == ["c"]


def test_sorting_by_a_column_toggles_and_keeps_unscored_cases_last():
    model = CaseTableModel()
    model.setRanking(ranking())

    model.sortBy(CaseColumn.ASD)
    ascending = [row.caseId for row in model.rows()]
    model.sortBy(CaseColumn.ASD)  # the same column again: reversed
    descending = [row.caseId for row in model.rows()]
    model.sortBy(CaseColumn.NAME)

    assert ascending == ["b", "a", "c", "d"]
    assert descending == ["c", "a", "b", "d"]
    assert [row.caseId for row in model.rows()] == ["a", "b", "c", "d"]  # names sort without case
    assert model.rowIndexOfCase("c") == 2 and model.rowIndexOfCase("zzz") is None


def test_status_summary_counts_each_status():
    model = CaseTableModel()
    assert model.statusSummary() == "no cases"
    model.setRanking(ranking())
    assert model.statusSummary() == "1 unlabelled, 1 suggested, 1 labelled, 1 pseudo-labelled"


def test_a_skipped_or_flagged_case_shows_its_mark_instead_of_suggested_and_is_not_highlighted():
    model = CaseTableModel()
    model.setRanking(ranking())  # "c" was served: suggested, and the backend's next
    marks = {"c": "skipped", "b": "flagged"}  # a mark on a labelled case changes nothing

    rows = {row.caseId: row for row in model.rows(marks)}

    status = CaseTableModel.columns.index(CaseColumn.STATUS)
    assert rows["c"].cells[status] == "skipped" and not rows["c"].suggested
    assert rows["b"].cells[status] == "labelled"
    assert model.statusSummary(marks) == "1 unlabelled, 1 skipped, 1 labelled, 1 pseudo-labelled"
    assert model.rows()[0].suggested  # without marks, as the backend says
