#!/usr/bin/env bash
# Start or stop a Spark standalone master and one worker on 127.0.0.1, with the scripts that ship
# inside pyspark (spark-daemon.sh / spark-class). Used by .ci/run and the cluster tests.
#   scripts/spark-cluster.sh start [PYTHON]   # PYTHON: the interpreter whose pyspark to use
#   scripts/spark-cluster.sh stop  [PYTHON]
set -euo pipefail
action=${1:?start or stop}
py=${2:-python3}
SPARK_HOME=$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
export SPARK_LOG_DIR=${SPARK_LOG_DIR:-/tmp/hpsearch-spark-logs} SPARK_PID_DIR=${SPARK_PID_DIR:-/tmp/hpsearch-spark-pids}
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$("$py" -c 'import sys; print(sys.executable)')}
daemon="$SPARK_HOME/sbin/spark-daemon.sh"
master=org.apache.spark.deploy.master.Master
worker=org.apache.spark.deploy.worker.Worker
case "$action" in
  start)
    if curl -sf http://127.0.0.1:8090/json/ 2>/dev/null | grep -q '"state" *: *"ALIVE"'; then
        echo "spark standalone cluster already up at spark://127.0.0.1:7077"; exit 0
    fi
    bash "$daemon" start $master 1 --host 127.0.0.1 --port 7077 --webui-port 8090
    bash "$daemon" start $worker 1 spark://127.0.0.1:7077 --host 127.0.0.1 --cores "${SPARK_WORKER_CORES:-2}" \
        --memory "${SPARK_WORKER_MEMORY:-4g}" --webui-port 8091
    for _ in $(seq 60); do   # wait until the worker has registered (the master's JSON lists it ALIVE)
        if curl -sf http://127.0.0.1:8090/json/ 2>/dev/null | grep -q '"state" *: *"ALIVE"'; then
            echo "spark standalone cluster up at spark://127.0.0.1:7077"; exit 0
        fi
        sleep 1
    done
    echo "spark cluster did not come up; logs in $SPARK_LOG_DIR" >&2; exit 1 ;;
  stop)
    bash "$daemon" stop $worker 1 || true
    bash "$daemon" stop $master 1 || true ;;
  *) echo "usage: $0 start|stop [PYTHON]" >&2; exit 2 ;;
esac
