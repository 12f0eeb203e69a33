"""Render the notebook's ``summary`` output as a Markdown report.

Writes ``build/report.md`` beside this file, inside the pipeline run's own copy of
the project, where the next step (``publish.sh``) picks it up. Step parameter
``decimals`` sets the rounding of the numbers.
"""

from pathlib import Path

import orchest

summary = orchest.get_inputs()["summary"]
decimals = int(orchest.get_step_param("decimals", 1))


def num(value):
    return f"{value:.{decimals}f}"


lines = [
    f"## {summary['city']}: {summary['generated_days']} day(s), seed {summary['seed']}",
    "",
    f"Mean temperature {num(summary['mean_c'])} C (standard deviation "
    f"{num(summary['stdev_c'])} C), {num(summary['rain_total_mm'])} mm of rain, "
    f"{summary['hot_days']} day(s) reaching {summary['hot_threshold_c']} C.",
    "",
    f"### The last {summary['highlight_days']} day(s)",
    "",
    "| date | min C | max C | mean C | rain mm | max wind km/h |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
]
for day in summary["recent"]:
    lines.append(
        f"| {day['date']} | {num(day['min_c'])} | {num(day['max_c'])} | {num(day['mean_c'])} "
        f"| {num(day['rain_mm'])} | {num(day['max_wind_kmh'])} |"
    )

report = Path(__file__).resolve().parent / "build" / "report.md"
report.parent.mkdir(exist_ok=True)
report.write_text("\n".join(lines) + "\n")
print(f"Wrote {report}")
