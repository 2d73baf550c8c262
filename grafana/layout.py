"""Grafana dashboard JSON building blocks: plain dicts in the shape Grafana 12 saves.

Panels never name a data source uid: they point at the dashboard's data-source variables, so
the same JSON works provisioned (uids `prometheus`, `tempo`, `jaeger`) and imported by hand into
a Grafana whose data sources are called anything.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

SCHEMA_VERSION = 41  # Grafana 12.0's dashboard schema; later 12.x/13.x migrate it on load
GRAFANA_VERSION = "12.0.0"

PROMETHEUS = {"type": "prometheus", "uid": "${datasource}"}
TEMPO = {"type": "tempo", "uid": "${tempo}"}
JAEGER = {"type": "jaeger", "uid": "${jaeger}"}

Json = dict[str, Any]


# --- queries ---------------------------------------------------------------------------------
def prom(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False,
    exemplar: bool = False,
) -> Json:
    """A Prometheus target; `refId` is assigned by `panel()`."""
    target: Json = {
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if table:
        target["format"] = "table"
    if exemplar:
        target["exemplar"] = True
    return target


def traceql(query: str, *, limit: int = 20, spans_per_trace: int = 3) -> Json:
    return {
        "datasource": TEMPO,
        "queryType": "traceql",
        "query": query,
        "limit": limit,
        "spss": spans_per_trace,
        "tableType": "traces",
        "filters": [],
    }


# --- field config ----------------------------------------------------------------------------
def steps(*levels: tuple[str, float | None]) -> Json:
    """Absolute thresholds: the first level has value None (the base colour)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in levels]}


BASE = steps(("green", None))


def override(matcher: str, name: str, **properties: Any) -> Json:
    """A field override; property ids use dots (`custom.cellOptions`), given here as `__`."""
    return {
        "matcher": {"id": matcher, "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


def link(title: str, url: str) -> Json:
    return {"title": title, "url": url, "targetBlank": False}


def explore_url(datasource: Json, query: Json, time_from: str = "now-7d") -> str:
    """A Grafana Explore URL; `${...}` placeholders stay literal for Grafana to fill in."""
    pane = {
        "datasource": datasource["uid"],
        "queries": [{"refId": "A", "datasource": datasource, **query}],
        "range": {"from": time_from, "to": "now"},
    }
    panes = urllib.parse.quote(json.dumps({"run": pane}, separators=(",", ":")), safe="${}:")
    return f"/explore?schemaVersion=1&orgId=1&panes={panes}"


# --- panels ----------------------------------------------------------------------------------
def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    width: int,
    height: int,
    options: Json | None = None,
    custom: Json | None = None,
    thresholds: Json | None = None,
    overrides: list[Json] | None = None,
    links: list[Json] | None = None,
    transformations: list[Json] | None = None,
    datasource: Json = PROMETHEUS,
    **defaults: Any,
) -> Json:
    """One panel; its size travels in `gridPos` and `Grid` places it."""
    refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    field_defaults: Json = {"unit": unit, "thresholds": thresholds or BASE, **defaults}
    if custom is not None:
        field_defaults["custom"] = custom
    if links:
        field_defaults["links"] = links
    result: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": [{**t, "refId": refs[i]} for i, t in enumerate(targets)],
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(
    title: str, description: str, unit: str, targets: list[Json], *, width: int = 12,
    height: int = 8, threshold_line: float | None = None, stacked: bool = False,
    bars: bool = False, overrides: list[Json] | None = None, **defaults: Any,
) -> Json:
    """A time series; `threshold_line` draws an alert threshold as a red dashed line."""
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "axisSoftMin": 0,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if threshold_line is not None else "off"},
    }
    levels = BASE if threshold_line is None else steps(("green", None), ("red", threshold_line))
    return panel(
        "timeseries", title, description, unit, targets, width=width, height=height,
        custom=custom, thresholds=levels, overrides=overrides,
        color={"mode": "palette-classic"},
        options={
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                       "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **defaults,
    )


def _reduce(calc: str = "lastNotNull") -> Json:
    return {"calcs": [calc], "fields": "", "values": False}


def stat(
    title: str, description: str, unit: str, targets: list[Json], *, width: int = 6,
    height: int = 5, thresholds: Json | None = None, **defaults: Any,
) -> Json:
    return panel(
        "stat", title, description, unit, targets, width=width, height=height,
        thresholds=thresholds, color={"mode": "thresholds"},
        options={"reduceOptions": _reduce(), "colorMode": "value", "graphMode": "none",
                 "justifyMode": "auto", "orientation": "auto", "textMode": "auto",
                 "wideLayout": True, "showPercentChange": False},
        **defaults,
    )


def bargauge(
    title: str, description: str, unit: str, targets: list[Json], *, width: int = 12,
    height: int = 8, thresholds: Json | None = None, overrides: list[Json] | None = None,
    **defaults: Any,
) -> Json:
    return panel(
        "bargauge", title, description, unit, targets, width=width, height=height,
        thresholds=thresholds, overrides=overrides, color={"mode": "thresholds"},
        options={"reduceOptions": _reduce(), "displayMode": "gradient",
                 "orientation": "horizontal", "showUnfilled": True, "valueMode": "color",
                 "namePlacement": "auto", "sizing": "auto", "minVizHeight": 16,
                 "minVizWidth": 8, "maxVizHeight": 300},
        **defaults,
    )


def table(
    title: str, description: str, unit: str, targets: list[Json], *, width: int = 24,
    height: int = 8, overrides: list[Json] | None = None, sort_by: str | None = None,
    transformations: list[Json] | None = None, datasource: Json = PROMETHEUS,
    links: list[Json] | None = None,
) -> Json:
    options: Json = {"showHeader": True, "cellHeight": "sm",
                     "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return panel(
        "table", title, description, unit, targets, width=width, height=height,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        overrides=overrides, options=options, transformations=transformations,
        datasource=datasource, links=links,
    )


def traces_view(title: str, description: str, query: str, *, height: int = 14) -> Json:
    return panel(
        "traces", title, description, "none", [traceql(query)], width=24, height=height,
        datasource=TEMPO,
    )


def row(title: str) -> Json:
    """A row header: layout only (no query, no data source, no unit)."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}}


class Grid:
    """Places panels left to right in Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def add(self, *panels: Json) -> Grid:
        for item in panels:
            pos = item["gridPos"]
            if item["type"] == "row" or self._x + pos["w"] > 24:
                self._newline()
            pos["x"], pos["y"] = self._x, self._y
            self._x += pos["w"]
            self._row_height = max(self._row_height, pos["h"])
            if item["type"] == "row":
                self._newline()
            item["id"] = len(self.panels) + 1
            self.panels.append(item)
        return self


# --- variables and the dashboard -------------------------------------------------------------
def datasource_variable(name: str, plugin: str, label: str) -> Json:
    return {"name": name, "label": label, "type": "datasource", "query": plugin, "current": {},
            "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False,
            "options": []}


def query_variable(
    name: str, label: str, query: str, *, multi: bool, description: str
) -> Json:
    """A Prometheus label-values variable; multi-value ones get All = `.*`."""
    variable: Json = {
        "name": name, "label": label, "description": description, "type": "query",
        "datasource": PROMETHEUS, "definition": query, "query": query, "refresh": 2,
        "sort": 1, "regex": "", "current": {}, "hide": 0, "options": [],
        "multi": multi, "includeAll": multi,
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


def textbox_variable(name: str, label: str, default: str, description: str) -> Json:
    return {"name": name, "label": label, "description": description, "type": "textbox",
            "query": default, "current": {"text": default, "value": default}, "hide": 0,
            "options": [{"selected": True, "text": default, "value": default}]}


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], grid: Grid,
    *, plugins: list[tuple[str, str, str]],
) -> Json:
    """The dashboard document; `plugins` are (type, id, name) for `__requires`."""
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana",
                 "version": GRAFANA_VERSION}]
    requires += [{"type": t, "id": i, "name": n, "version": ""} for t, i, n in plugins]
    return {
        "__requires": requires,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ondine", "llm"],
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "version": 1,
        "weekStart": "",
        "links": [{"type": "dashboards", "tags": ["ondine"], "asDropdown": False,
                   "includeVars": True, "keepTime": True, "title": "ondine dashboards",
                   "icon": "external link", "targetBlank": False, "tooltip": "",
                   "url": ""}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": variables},
        "panels": grid.panels,
    }
