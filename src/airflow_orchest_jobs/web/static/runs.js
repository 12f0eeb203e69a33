// The pipeline runs of one job run (DAG run): Orchest's job view, paged on the server.
// With data-mode="history": every pipeline run of every job run of the DAG (the job's
// history, newest job run first), read-only, with a job-run column.
"use strict";
(() => {
  const {el, set, api, badge, topLink, fmtDate, fmtDuration, value} = OJ;
  const app = document.getElementById("app");
  const url = app.dataset.api;
  const history = app.dataset.mode === "history";
  const STATES = ["success", "failed", "running", "queued", "cancelled"];
  // A page size in the page's own URL (?limit=N, at most 500) is kept, e.g. for a link.
  const asked = Number(new URLSearchParams(window.location.search).get("limit"));
  const view = {states: new Set(), q: "", sort: history ? "job_run" : "index",
                order: history ? "desc" : "asc", offset: 0,
                limit: asked >= 1 && asked <= 500 ? Math.floor(asked) : 50};
  let timer = null, last = null, pending = null;

  const title = el("h1", {}, history ? "Job history" : "Pipeline runs");
  const sub = el("div", {class: "summary muted"});
  const notices = el("div");
  const chips = el("div", {class: "toolbar", role: "group", "aria-label": "Filter by state"});
  const search = el("input", {type: "search", placeholder: "Search parameters (a=2, oslo …)",
                              "aria-label": "Search parameters", id: "search"});
  const actions = el("span", {class: "toolbar"});
  const message = el("span", {class: "muted", id: "message", role: "status"});
  const table = el("table", {id: "runs"});
  const pager = el("div", {class: "pager"});
  set(app, title, sub, notices, chips,
    el("div", {class: "toolbar"}, search, actions, message), el("div", {class: "wrap"}, table),
    pager);

  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { view.q = search.value; view.offset = 0; load(); }, 250);
  });

  function query() {
    const p = new URLSearchParams();
    for (const s of view.states) p.append("state", s);
    if (view.q) p.set("q", view.q);
    p.set("sort", view.sort); p.set("order", view.order);
    p.set("offset", view.offset); p.set("limit", view.limit);
    return `${url}?${p}`;
  }

  async function load() {
    clearTimeout(timer);
    const mine = query();
    pending = mine;
    try {
      const data = await api(mine);
      if (pending !== mine) return;
      last = data;
      render(data);
      const unfinished = data.counts.running + data.counts.queued > 0 ||
        (!history && ["running", "queued"].includes(data.dag_run.airflow_state));
      if (unfinished) timer = setTimeout(load, 3000);
    } catch (err) {
      set(notices, el("p", {class: "error"}, `Cannot load the pipeline runs: ${err.message}`));
      if (err.status !== 403 && err.status !== 404) timer = setTimeout(load, 5000);
    }
  }

  function confirmButton(label, question, cls, run) {
    const button = el("button", {class: `action ${cls || ""}`, type: "button"}, label);
    button.addEventListener("click", () => {
      const yes = el("button", {class: "action", type: "button", "data-confirm": "yes"}, "Yes");
      const no = el("button", {class: "action secondary", type: "button"}, "No");
      const box = el("span", {class: "confirm"}, question, yes, no);
      button.replaceWith(box);
      no.addEventListener("click", () => box.replaceWith(button));
      yes.addEventListener("click", async () => {
        yes.disabled = no.disabled = true;
        try { message.textContent = await run(); } catch (err) { message.textContent = err.message; }
        box.replaceWith(button);
        load();
      });
    });
    return button;
  }

  function render(data) {
    const links = data.links;
    if (history) {
      set(sub, el("span", {}, "DAG ", topLink(links.dag, data.dag_id)),
        el("span", {}, `${data.total_runs} pipeline run(s) of ${data.total_job_runs} job run(s), newest job run first`));
    } else set(sub, 
      el("span", {}, "DAG ", topLink(links.dag, data.dag_id)),
      el("span", {}, "run ", topLink(links.dag_run, data.dag_run_id)),
      el("span", {}, "job run ", badge(data.dag_run.state)),
      data.dag_run.start_date ? el("span", {}, `started ${fmtDate(data.dag_run.start_date)}`) : null,
      window.top !== window ? el("a", {href: links.pipeline_runs, id: "full-page"},
                                 "open as a full page") : null,
      el("a", {href: links.history, id: "history-link"}, "the job's history"));
    set(notices, 
      !history && data.dag_run.cancelled ? el("p", {class: "notice", id: "cancelled-by"},
        `Cancelled by ${data.dag_run.cancelled.by} (${data.dag_run.cancelled.via}) at ${fmtDate(data.dag_run.cancelled.at)}.`) : null,
      history && !data.total_runs ? el("p", {class: "notice"}, "No pipeline runs yet.") : null,
      !data.is_orchest ? el("p", {class: "notice"}, "This DAG is not an Orchest DAG: it has no pipeline runs.") : null,
      !history && data.is_orchest && !data.planned ? el("p", {class: "notice"},
        "No pipeline runs yet: the job run has not been planned (see its snapshot and plan tasks).") : null);
    set(chips, 
      chip("all", `all`, data.total_runs, view.states.size === 0),
      ...STATES.map((s) => chip(s, s, data.counts[s] || 0, view.states.has(s))));
    set(actions, );
    if (!history && data.can_cancel && ["running", "queued"].includes(data.dag_run.airflow_state)) {
      actions.append(confirmButton("Cancel job run", "Cancel the whole job run?", "danger", async () => {
        const r = await api(`${url.replace(/\/pipelineRuns$/, "")}/cancel`, {body: {}});
        return `Job run cancelled: ${r.task_instances_stopped} task(s) stopped.`;
      }));
      actions.lastChild.id = "cancel-job-run";
    }
    if (!history && data.can_edit && data.counts.failed > 0) {
      actions.append(confirmButton(`Re-run failed runs (${data.counts.failed})`,
        `Re-run the ${data.counts.failed} failed run(s)?`, "", async () => {
          const r = await api(`${url}/rerun`, {body: {runs: null, states: ["failed"]}});
          return `Re-running ${r.pipeline_runs} pipeline run(s).`;
        }));
      actions.lastChild.id = "rerun-failed";
    }
    renderTable(data);
    const first = data.total_entries ? data.offset + 1 : 0;
    const lastRow = Math.min(data.offset + data.limit, data.total_entries);
    const size = el("select", {"aria-label": "Rows per page"},
      ...[...new Set([25, 50, 100, 500, view.limit])].sort((a, b) => a - b).map(
        (n) => el("option", {value: n, selected: n === view.limit}, n)));
    size.addEventListener("change", () => { view.limit = Number(size.value); view.offset = 0; load(); });
    set(pager, 
      el("button", {class: "action secondary small", type: "button", disabled: data.offset === 0,
                    onclick: () => { view.offset = Math.max(0, view.offset - view.limit); load(); }}, "‹ prev"),
      el("span", {id: "range"}, `${first}–${lastRow} of ${data.total_entries}` +
        (data.total_entries !== data.total_runs ? ` (filtered from ${data.total_runs})` : "")),
      el("button", {class: "action secondary small", type: "button",
                    disabled: data.offset + data.limit >= data.total_entries,
                    onclick: () => { view.offset += view.limit; load(); }}, "next ›"),
      size);
  }

  function chip(key, label, n, pressed) {
    return el("button", {class: "chip", type: "button", "aria-pressed": pressed ? "true" : "false",
                         "data-filter": key, onclick: () => {
      if (key === "all") view.states.clear();
      else if (view.states.has(key)) view.states.delete(key);
      else view.states.add(key);
      view.offset = 0; load();
    }}, label, el("span", {class: "n", "data-count": key}, n));
  }

  function header(key, label, cls) {
    const sorted = view.sort === key;
    return el("th", {class: cls, "data-sort": key,
                     "aria-sort": sorted ? (view.order === "asc" ? "ascending" : "descending") : null,
                     onclick: () => {
      if (view.sort === key) view.order = view.order === "asc" ? "desc" : "asc";
      else { view.sort = key; view.order = "asc"; }
      view.offset = 0; load();
    }}, label, sorted ? el("span", {class: "arrow"}, view.order === "asc" ? "▲" : "▼") : null);
  }

  function renderTable(data) {
    const head = el("tr", {},
      history ? header("job_run", "Job run") : null,
      header("index", "Run"), header("state", "State"),
      ...data.columns.map((c) => header(c.id, c.title, c.varying ? "param" : "param const")),
      header("start", "Started"), header("duration", "Duration"),
      el("th", {}, "Steps"), el("th", {}, "Files"), data.can_edit && !history ? el("th", {}, "") : null);
    const body = data.pipeline_runs.map((r) => el("tr", {"data-index": r.index, "data-state": r.state,
                                                          "data-run": r.dag_run_id},
      history ? el("td", {class: "job-run"}, el("a", {href: r.links.pipeline_runs, class: "runs-link"}, r.dag_run_id),
        " ", badge(r.job_run_state)) : null,
      el("td", {}, `#${r.index}`),
      el("td", {}, badge(r.state)),
      ...data.columns.map((c) => el("td", {class: "param", "data-column": c.id}, value(r.parameters[c.id]))),
      el("td", {}, fmtDate(r.start_date)),
      el("td", {}, fmtDuration(r.duration)),
      el("td", {}, el("div", {class: "steps"}, ...r.steps.map((s) => step(s)))),
      el("td", {}, el("a", {href: r.files_url, class: "files-link"}, "files")),
      data.can_edit && !history ? el("td", {}, rowAction(r)) : null));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
    if (!data.pipeline_runs.length && data.planned) {
      table.append(el("tbody", {}, el("tr", {}, el("td", {colspan: 99, class: "muted"},
        "No pipeline run matches."))));
    }
  }

  const WORDS = {stopped: "stopped by fail-fast", upstream_failed: "not started (upstream failed)",
                 cancelled: "cancelled", retrying: "retrying"};
  function step(s) {
    const state = s.state;
    return el("span", {class: "step", "data-step": s.task_id, "data-step-state": state,
                       title: `${s.title}: ${WORDS[state] || state}` + (s.try_number > 1 ? ` (try ${s.try_number})` : "")},
      badge(state, s.title),
      el("span", {class: "links"},
        s.log_url && !["upstream_failed", null].includes(s.airflow_state) ? el("a", {href: s.log_url, class: "log-link"}, "log") : null,
        s.notebook_url && ["success", "failed"].includes(s.airflow_state)
          ? el("a", {href: s.notebook_url, class: "notebook-link"}, "notebook") : null,
        topLink(s.task_url, "task", {class: "task-link"})));
  }

  function rowAction(r) {
    if (r.state === "running" || r.state === "queued") {
      return confirmButton("Cancel", `Cancel run ${r.index}?`, "danger small", async () => {
        const res = await api(`${url}/${r.index}/cancel`, {body: {}});
        return `Run ${r.index}: ${res.task_instances_stopped} task(s) stopped.`;
      });
    }
    if (r.state === "failed" || r.state === "cancelled") {
      return confirmButton("Re-run", `Re-run run ${r.index}?`, "secondary small", async () => {
        const res = await api(`${url}/rerun`, {body: {runs: [r.index]}});
        return `Re-running ${res.pipeline_runs} pipeline run(s).`;
      });
    }
    return null;
  }

  load();
})();
