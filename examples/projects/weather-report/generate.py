"""Generate synthetic weather readings for one city (no network).

Reads the pipeline parameters ``city`` and ``days`` and the step parameters
``seed``, ``start_date`` and ``readings_per_day``; outputs the readings under the
name ``readings`` for the next step.
"""

import datetime as dt
import math
import random

import orchest

# Rough June climate per city: (mean temperature in C, daily swing in C,
# chance of rain per reading, mean wind in km/h).
CLIMATES = {
    "Amsterdam": (16.0, 8.0, 0.35, 22.0),
    "Lisbon": (22.0, 10.0, 0.08, 16.0),
    "Oslo": (14.0, 9.0, 0.30, 12.0),
    "Reykjavik": (10.0, 5.0, 0.45, 25.0),
}
DEFAULT_CLIMATE = (15.0, 8.0, 0.25, 15.0)

city = orchest.get_pipeline_param("city", "Amsterdam")
days = int(orchest.get_pipeline_param("days", 3))
seed = orchest.get_step_param("seed", 1)
start_date = dt.date.fromisoformat(orchest.get_step_param("start_date", "2024-06-01"))
per_day = int(orchest.get_step_param("readings_per_day", 4))
if days < 1 or per_day < 1:
    raise SystemExit(f"days ({days}) and readings_per_day ({per_day}) must be at least 1")

mean_t, swing, rain_chance, mean_wind = CLIMATES.get(city, DEFAULT_CLIMATE)
rng = random.Random(f"{city}/{seed}")  # same city and seed, same readings

readings = []
for day in range(days):
    date = start_date + dt.timedelta(days=day)
    day_offset = rng.gauss(0.0, 2.0)  # some days are warmer than others
    for i in range(per_day):
        hour = i * 24 // per_day
        # Coldest around 04:00, warmest around 16:00.
        diurnal = -math.cos((hour - 4) / 24 * 2 * math.pi) * swing / 2
        rain = rng.expovariate(1 / 2.5) if rng.random() < rain_chance else 0.0
        readings.append(
            {
                "date": date.isoformat(),
                "hour": hour,
                "temperature_c": round(mean_t + day_offset + diurnal + rng.gauss(0, 1), 1),
                "precipitation_mm": round(rain, 1),
                "wind_kmh": round(max(0.0, rng.gauss(mean_wind, mean_wind / 3)), 1),
            }
        )

data = {"city": city, "seed": seed, "days": days, "readings": readings}
print(f"Generated {len(readings)} readings for {city} over {days} day(s) (seed {seed}).")
orchest.output(data, name="readings")
