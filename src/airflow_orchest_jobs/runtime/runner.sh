# Orchest step runner (POSIX sh): runs one step file the way Orchest did.
#
# Usage: sh /orchest-runner/runner.sh STEP_FILE     (mounted read-only, never baked in)
#
# The interpreter follows the lower-cased extension, as Orchest's run.py chose it: .ipynb
# -> notebook.py, .py -> the conda env's python (CONDA_ENV, see below) or python3,
# .sh or none -> bash, .r -> Rscript, .jl -> julia, .js -> node. Output goes to
# stdout/stderr only: the worker shows it in the Airflow task log and writes Orchest's
# .orchest/pipelines/<pipeline>/logs/<step>.log from it, with the run's secrets redacted
# (a step never writes that file). The step's exit status is the runner's. A missing
# interpreter exits 127 with one line naming the image ($ORCHEST_RUNNER_IMAGE) and the
# program. SIGTERM (docker stop) goes to every process of the step at once; the runner
# then exits with the step's status.

# As in Orchest: files a step creates are group-writable.
umask 002

# A stop requested before the step starts: noted now (as PID 1 an untrapped TERM would be
# ignored), acted on once the step runs.
stopping=""
trap 'stopping=1' TERM INT HUP

step_file=${1:?usage: runner.sh STEP_FILE}
runner_dir=$(dirname "$0")
image=${ORCHEST_RUNNER_IMAGE:-this image}

# A message for the person reading the task log (and the step's log file).
say() {
    printf 'orchest-runner: %s\n' "$1" >&2
}

have() {
    command -v "$1" >/dev/null 2>&1
}

missing() {
    say "the image $image has no '$1' (needed to run $step_file); install it in the environment's setup_script.sh or use an image that has it"
    exit 127
}

# Orchest ran .py files with "$python_env/bin/python", python_env being /opt/conda for
# CONDA_ENV=base and /opt/conda/envs/$CONDA_ENV otherwise. Sets conda_python to that
# path; fails when CONDA_ENV is unset or empty, or the image has no /opt/conda at all
# (then python3 from PATH serves, as in any image without conda).
conda_env_python() {
    [ -n "${CONDA_ENV:-}" ] && [ -d /opt/conda ] || return 1
    if [ "$CONDA_ENV" = base ]; then
        conda_python=/opt/conda/bin/python
    else
        conda_python="/opt/conda/envs/$CONDA_ENV/bin/python"
    fi
}

# python3, else python, from PATH: for images without conda.
path_python() {
    if have python3; then
        path_python=python3
    elif have python; then
        path_python=python
    else
        missing python3
    fi
}

if [ ! -f "$step_file" ]; then
    say "step file $step_file not found in the run's project copy"
    exit 2
fi
cd "$(dirname "$step_file")" || exit 2

# The extension of the file's name (Orchest looked at the project-relative path, so a
# dot in a folder name made an extensionless file fail there; here it runs with bash).
name=${step_file##*/}
case "$name" in
    *.*) ext=$(printf '%s' "${name##*.}" | tr '[:upper:]' '[:lower:]') ;;
    *) ext="" ;;
esac

case "$ext" in
    ipynb)
        # Orchest's notebook kernels were those of /opt/conda (its base env): notebook.py
        # runs there when the image has it, so a kernelspec naming plain "python" starts
        # that interpreter too.
        if [ -x /opt/conda/bin/python ]; then
            set -- /opt/conda/bin/python "$runner_dir/notebook.py" "$step_file"
        else
            path_python
            set -- "$path_python" "$runner_dir/notebook.py" "$step_file"
        fi
        ;;
    py)
        if conda_env_python; then
            if [ ! -x "$conda_python" ]; then
                say "the image $image has no $conda_python (Orchest runs .py steps with the Python of the conda env CONDA_ENV=$CONDA_ENV names, needed to run $step_file); create that env in the environment's setup_script.sh or set CONDA_ENV to an env the image has"
                exit 127
            fi
            set -- "$conda_python" "$step_file"
        else
            path_python
            set -- "$path_python" "$step_file"
        fi
        ;;
    sh | "")
        have bash || missing bash
        set -- bash "$step_file"
        ;;
    r)
        have Rscript || missing Rscript
        set -- Rscript "$step_file"
        ;;
    jl)
        have julia || missing julia
        set -- julia "$step_file"
        ;;
    js)
        have node || missing node
        set -- node "$step_file"
        ;;
    *)
        say "cannot run $step_file: Orchest runs .ipynb, .py, .sh (or no extension), .r, .jl and .js files"
        exit 2
        ;;
esac

# Python output straight through, so the log shows it as it happens.
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-1}"

# The step runs in the background so a TERM sent to this shell (PID 1, docker stop)
# reaches it, and every process of this process group, at once; the runner exits with
# the step's status. (notebook.py stops its kernel, which runs in a session of its own,
# itself.)
[ -z "$stopping" ] || exit 143
"$@" &
step_pid=$!

stop() {
    trap '' TERM INT HUP
    stopping=1
    kill -TERM 0 2>/dev/null
}
trap stop TERM INT HUP
[ -z "$stopping" ] || stop
wait "$step_pid"
status=$?
# A trapped signal interrupts wait: wait again for the step's real status.
while kill -0 "$step_pid" 2>/dev/null; do
    wait "$step_pid"
    status=$?
done
exit "$status"
