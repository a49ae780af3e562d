"""Plot nodes for Dice per round and DKD against ASD, in a real MRML scene."""

from __future__ import annotations

from ASFDAModuleLib.BackendTypes import Case, CaseStatus, RoundMetrics


def column(tableNode, name):
    array = tableNode.GetTable().GetColumnByName(name)
    return [array.GetValue(i) for i in range(array.GetNumberOfTuples())]


def test_dice_per_round_is_a_line_chart_updated_in_place(mrml):
    from ASFDAModuleLib.Plots import updateDicePlot

    metrics = [
        RoundMetrics(2, "v2", 3, 0.81, 40.0),
        RoundMetrics(1, "v1", 2, 0.74, 35.0),
        RoundMetrics(0, "v0", 1, None, 20.0),
    ]
    chart = updateDicePlot(mrml.scene, metrics)
    again = updateDicePlot(mrml.scene, metrics[:1])

    assert again is chart
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    series = chart.GetNthPlotSeriesNode(0)
    assert chart.GetNumberOfPlotSeriesNodes() == 1 and series.GetYColumnName() == "Dice"
    table = series.GetTableNode()
    assert column(table, "round") == [2.0] and column(table, "Dice") == [0.81]
    updateDicePlot(mrml.scene, metrics)
    assert column(table, "round") == [1.0, 2.0] and column(table, "labelled cases") == [2.0, 3.0]
    assert chart.GetYAxisRange() == (0.0, 1.0)


def test_dkd_against_asd_marks_the_picked_cases(mrml):
    from ASFDAModuleLib.Plots import updateScorePlot

    cases = [
        Case("a", "A", CaseStatus.UNLABELLED, dkd=0.2, asd=0.5),
        Case("b", "B", CaseStatus.LABELLED, dkd=0.7, asd=0.9),
        Case("c", "C", CaseStatus.SUGGESTED, dkd=0.6, asd=0.4),
        Case("d", "D", CaseStatus.PSEUDO_LABELLED, dkd=0.1, asd=0.2),
        Case("e", "E", CaseStatus.UNLABELLED),
    ]  # not scored yet: not plotted

    plot = updateScorePlot(mrml.scene, cases)

    assert column(plot.poolTable, "case") == ["A", "D"]
    assert column(plot.pickedTable, "case") == ["B", "C"]
    assert column(plot.pickedTable, "DKD") == [0.7, 0.6] and column(plot.pickedTable, "ASD") == [0.9, 0.4]
    pool, picked = (plot.chart.GetNthPlotSeriesNode(i) for i in range(2))
    assert pool.GetPlotType() == picked.GetPlotType() == mrml.slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter
    assert pool.GetMarkerStyle() != picked.GetMarkerStyle()
    assert (picked.GetXColumnName(), picked.GetYColumnName()) == ("ASD", "DKD")
