// The jobs overview: every Orchest DAG, its schedule, snapshot, images and latest job runs.
"use strict";
(() => {
  const {el, set, api, badge, topLink, fmtDate, fmtBytes} = OJ;
  const app = document.getElementById("app");
  const STATES = ["success", "failed", "running", "queued", "cancelled"];

  async function load() {
    try {
      render(await api(app.dataset.api));
    } catch (err) {
      set(app, el("h1", {}, "Orchest jobs"),
        el("p", {class: "error"}, `Cannot load the jobs: ${err.message}`));
    }
  }

  function counts(run) {
    return el("span", {class: "counts"}, ...STATES.filter((s) => run.counts[s]).map(
      (s) => badge(s, `${run.counts[s]} ${s}`)));
  }

  function render(data) {
    const rows = data.jobs.map((j) => el("tr", {"data-dag": j.dag_id},
      el("td", {}, topLink(j.links.dag, j.dag_id, {class: "dag-link"}),
         el("div", {class: "muted"}, `${j.kind} · project ${j.project || "?"}`),
         j.description ? el("div", {class: "muted"}, j.description) : null),
      el("td", {}, j.schedule && j.schedule !== "None" ? j.schedule : "trigger only",
         j.next_run ? el("div", {class: "muted"}, `next ${fmtDate(j.next_run)}`) : null,
         j.is_paused ? el("div", {}, badge("queued", "paused")) : null),
      el("td", {}, ...j.job_runs.map((r) => el("div", {class: "job-run", "data-run": r.dag_run_id},
        badge(r.state), " ", el("a", {href: r.links.pipeline_runs, class: "runs-link"}, r.dag_run_id),
        ` · ${r.total_runs} run(s) `, counts(r))),
        j.job_runs.length ? el("div", {}, el("a", {href: j.links.history, class: "history-link"},
          "every pipeline run (history)")) : el("span", {class: "muted"}, "no runs yet")),
      el("td", {}, snapshot(j)),
      el("td", {}, ...Object.entries(j.frozen_images).map(([k, v]) =>
        el("div", {title: `${k}: ${v}`, class: "image"}, shortImage(v))),
        Object.keys(j.frozen_images).length ? null : el("span", {class: "muted"}, "none yet")),
      el("td", {}, j.max_retained_pipeline_runs ? `keep ${j.max_retained_pipeline_runs}` : "keep all")));
    set(app, el("h1", {}, "Orchest jobs"),
      el("p", {class: "muted"}, `${data.total_entries} Orchest DAG(s) you may read. ` +
        "Pipelines run as one-off jobs; job files are scheduled jobs. Times in UTC."),
      el("div", {class: "wrap"}, el("table", {id: "jobs"},
        el("thead", {}, el("tr", {}, ...["DAG", "Schedule (UTC)", "Latest job runs", "Snapshot",
          "Frozen images", "Retention"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows))));
  }

  function shortImage(ref) {
    const [name, digest] = ref.split("@");
    const base = name.split("/").pop();
    return digest ? `${base}@${digest.slice(0, 19)}…` : (ref.length > 40 ? `${ref.slice(0, 40)}…` : ref);
  }

  function snapshot(j) {
    if (!j.snapshot) return el("span", {class: "muted"}, j.snapshot_mode === "per_job" ? "not created yet" : "one per job run");
    const s = j.snapshot;
    return el("div", {class: "snapshot"}, el("span", {title: s.id}, s.id.slice(0, 12)),
      el("div", {class: "muted"}, `${s.files ?? "?"} files · ${fmtBytes(s.bytes)}`),
      el("div", {class: "muted"}, `${(s.created_at || "").replace("T", " ").slice(0, 16)} · ` +
        (j.snapshot_mode === "per_job" ? "per job" : "latest job run's")));
  }

  load();
})();
