"""Progress of the adaptation as Slicer plot nodes: Dice per round, DKD against ASD over the pool, and the
edit effort (Dice between prediction and saved mask) per round.

The nodes are found again by a role attribute and updated in place, so refreshing after each round does not
pile up tables and charts in the scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import slicer
import vtk

from .BackendTypes import Case, CaseStatus, RoundMetrics
from .EditEffort import EditRecord

ROLE_ATTRIBUTE = "ASFDA.PlotRole"
PICKED_STATUSES = (CaseStatus.LABELLED, CaseStatus.SUGGESTED)


@dataclass(frozen=True)
class ScoreChart:
    """The DKD-against-ASD chart and its two tables (the pool, and the cases picked for labelling)."""

    chart: object
    poolTable: object
    pickedTable: object


def updateDicePlot(scene, metrics: Sequence[RoundMetrics]):
    """A line chart of the validation Dice on labelled cases after each fine-tuning round."""
    rounds = [m for m in sorted(metrics, key=lambda m: m.round) if m.valDice is not None]
    table = _nodeWithRole(scene, "vtkMRMLTableNode", "dice-table", "ASFDA Dice per round")
    _fillTable(
        table,
        {
            "round": [float(m.round) for m in rounds],
            "labelled cases": [float(m.labelledCount) for m in rounds],
            "Dice": [float(m.valDice) for m in rounds],
        },
    )
    series = _nodeWithRole(scene, "vtkMRMLPlotSeriesNode", "dice-series", "Dice")
    _configureSeries(
        series,
        table,
        "round",
        "Dice",
        slicer.vtkMRMLPlotSeriesNode.PlotTypeLine,
        slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle,
        (0.0, 0.45, 0.70),
    )
    chart = _nodeWithRole(scene, "vtkMRMLPlotChartNode", "dice-chart", "ASFDA Dice per round")
    _setSeries(chart, [series])
    chart.SetTitle("Dice on labelled cases per round")
    chart.SetXAxisTitle("Fine-tuning round")
    chart.SetYAxisTitle("Dice")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    return chart


def updateScorePlot(scene, cases: Sequence[Case]) -> ScoreChart:
    """A scatter plot of DKD against ASD for the scored pool, the picked cases marked apart."""
    scored = [case for case in cases if case.dkd is not None and case.asd is not None]
    picked = [case for case in scored if case.status in PICKED_STATUSES]
    pool = [case for case in scored if case.status not in PICKED_STATUSES]
    poolTable = _scoreTable(scene, "pool", pool)
    pickedTable = _scoreTable(scene, "picked", picked)
    poolSeries = _nodeWithRole(scene, "vtkMRMLPlotSeriesNode", "pool-series", "Pool")
    _configureSeries(
        poolSeries,
        poolTable,
        "ASD",
        "DKD",
        slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter,
        slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle,
        (0.6, 0.6, 0.6),
    )
    pickedSeries = _nodeWithRole(scene, "vtkMRMLPlotSeriesNode", "picked-series", "Picked for labelling")
    _configureSeries(
        pickedSeries,
        pickedTable,
        "ASD",
        "DKD",
        slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter,
        slicer.vtkMRMLPlotSeriesNode.MarkerStyleSquare,
        (0.84, 0.37, 0.0),
    )
    pickedSeries.SetMarkerSize(12)
    chart = _nodeWithRole(scene, "vtkMRMLPlotChartNode", "score-chart", "ASFDA DKD vs ASD")
    _setSeries(chart, [poolSeries, pickedSeries])
    chart.SetTitle("Knowledge divergence (DKD) against segmentation difficulty (ASD)")
    chart.SetXAxisTitle("ASD")
    chart.SetYAxisTitle("DKD")
    return ScoreChart(chart, poolTable, pickedTable)


def updateEditEffortPlot(scene, records: Sequence[EditRecord]):
    """Edit effort: each submitted case's Dice between prediction and mask, and the mean per round."""
    measured = [r for r in records if r.dice is not None]
    cases = _nodeWithRole(scene, "vtkMRMLTableNode", "effort-cases-table", "ASFDA edit Dice per case")
    _fillTable(
        cases,
        {
            "case": [r.caseName for r in measured],
            "round": [float(r.round or 0) for r in measured],
            "edit Dice": [float(r.dice) for r in measured],
        },
    )
    rounds = sorted({r.round or 0 for r in measured})
    means = _nodeWithRole(scene, "vtkMRMLTableNode", "effort-rounds-table", "ASFDA edit Dice per round")
    _fillTable(
        means,
        {
            "round": [float(n) for n in rounds],
            "mean edit Dice": [
                sum(r.dice for r in measured if (r.round or 0) == n)
                / sum((r.round or 0) == n for r in measured)
                for n in rounds
            ],
        },
    )
    caseSeries = _nodeWithRole(scene, "vtkMRMLPlotSeriesNode", "effort-cases-series", "Case")
    _configureSeries(
        caseSeries,
        cases,
        "round",
        "edit Dice",
        slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter,
        slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle,
        (0.6, 0.6, 0.6),
    )
    meanSeries = _nodeWithRole(scene, "vtkMRMLPlotSeriesNode", "effort-rounds-series", "Mean per round")
    _configureSeries(
        meanSeries,
        means,
        "round",
        "mean edit Dice",
        slicer.vtkMRMLPlotSeriesNode.PlotTypeLine,
        slicer.vtkMRMLPlotSeriesNode.MarkerStyleSquare,
        (0.0, 0.62, 0.45),
    )
    chart = _nodeWithRole(scene, "vtkMRMLPlotChartNode", "effort-chart", "ASFDA edit effort")
    _setSeries(chart, [caseSeries, meanSeries])
    chart.SetTitle("Edit effort: Dice between the model's prediction and the saved mask")
    chart.SetXAxisTitle("Model round the prediction came from")
    chart.SetYAxisTitle("Dice (1: accepted as predicted)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    return chart


def _scoreTable(scene, role: str, cases: Sequence[Case]):
    table = _nodeWithRole(scene, "vtkMRMLTableNode", f"{role}-table", f"ASFDA scores ({role})")
    _fillTable(
        table,
        {
            "case": [case.name for case in cases],
            "ASD": [float(case.asd) for case in cases],
            "DKD": [float(case.dkd) for case in cases],
        },
    )
    return table


def _nodeWithRole(scene, className: str, role: str, name: str):
    for index in range(scene.GetNumberOfNodesByClass(className)):
        node = scene.GetNthNodeByClass(index, className)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    node = scene.AddNewNodeByClass(className, name)
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node


def _fillTable(tableNode, columns: dict[str, list]) -> None:
    """Replace the table's content with these columns (numbers become double columns, text string ones)."""
    table = vtk.vtkTable()
    for name, values in columns.items():
        isText = any(isinstance(value, str) for value in values)
        array = vtk.vtkStringArray() if isText else vtk.vtkDoubleArray()
        array.SetName(name)
        for value in values:
            array.InsertNextValue(value)
        table.AddColumn(array)
    tableNode.SetAndObserveTable(table)


def _configureSeries(series, table, xColumn: str, yColumn: str, plotType: int, marker: int, color) -> None:
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(xColumn)
    series.SetYColumnName(yColumn)
    if table.GetTable().GetColumnByName("case") is not None:
        series.SetLabelColumnName("case")
    series.SetPlotType(plotType)
    series.SetMarkerStyle(marker)
    if plotType == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter:
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
    series.SetColor(*color)


def _setSeries(chart, seriesNodes) -> None:
    chart.RemoveAllPlotSeriesNodeIDs()
    for series in seriesNodes:
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
