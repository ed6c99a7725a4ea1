-- Vendors and models compared.
--
-- Per manufacturer and model: machines; unplanned machine failures and their
-- rate per machine-year of archive (room HVAC and chilled-water faults are the
-- site's, not the vendor's, and are left out); mean time to repair (downtime
-- start to repair end); anomaly episodes per machine-day (sensor faults left
-- out); and what the telemetry says about the cryogenics: the mean cold-head
-- 2nd-stage temperature (K; about 4.2 while it recondenses well) and the mean
-- helium level. The archive's span in days comes from `archive_partitions`.
WITH fleet AS (
    SELECT machine_id, manufacturer, model FROM machines
),
span AS (
    SELECT count(DISTINCT date) AS days FROM archive_partitions
),
failures AS (
    SELECT
        machine_id,
        count(*) AS failures,
        sum(date_part('epoch', repair_end) - date_part('epoch', downtime_start)) / 3600.0 AS repair_hours
    FROM events
    WHERE kind = 'failure' AND NOT planned AND downtime_start IS NOT NULL
      AND mode NOT IN ('hvac_out_of_spec', 'chiller_fault')
    GROUP BY machine_id
),
episodes AS (
    SELECT machine_id, count(*) AS episodes
    FROM anomalies
    WHERE kind <> 'sensor_fault'
    GROUP BY machine_id
),
cryo AS (
    SELECT
        machine_id,
        avg(value) FILTER (WHERE channel = 'coldhead_stage2_k') AS stage2_k,
        avg(value) FILTER (WHERE channel = 'helium_level_pct') AS helium_pct
    FROM readings
    WHERE stream = 'temperature' AND channel IN ('coldhead_stage2_k', 'helium_level_pct')
    GROUP BY machine_id
)
SELECT
    f.manufacturer,
    f.model,
    count(*) AS machines,
    coalesce(sum(fl.failures), 0) AS failures,
    round(coalesce(sum(fl.failures), 0) * 365.0 / (count(*) * s.days), 3) AS failures_per_machine_year,
    round(sum(fl.repair_hours) / sum(fl.failures), 1) AS mean_hours_to_repair,
    round(coalesce(sum(ep.episodes), 0) * 1.0 / (count(*) * s.days), 3) AS episodes_per_machine_day,
    round(avg(c.stage2_k), 3) AS mean_stage2_k,
    round(avg(c.helium_pct), 2) AS mean_helium_pct
FROM fleet f
CROSS JOIN span s
LEFT JOIN failures fl ON fl.machine_id = f.machine_id
LEFT JOIN episodes ep ON ep.machine_id = f.machine_id
LEFT JOIN cryo c ON c.machine_id = f.machine_id
GROUP BY f.manufacturer, f.model, s.days
ORDER BY f.manufacturer, f.model;
