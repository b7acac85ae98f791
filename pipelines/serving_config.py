"""`genpipe serving-config`: write TF Serving's model config file for a serving dir.

    genpipe serving-config --serving-dir runs/serving --base-path-prefix /models

scans `runs/serving/<model>/<version>/saved_model.pb` and writes `runs/serving/models.config`,
which serving/deploy/docker-compose.yml and serving/deploy/kubernetes.yaml pass to TF Serving as
`--model_config_file=/models/models.config` (the serving dir is mounted at /models). A serving dir or
--output in a bucket (gs://BUCKET/serving, where compiled pipelines push) works the same. Errors come
back as ValueError or FileNotFoundError so `genpipe` reports them with exit code 2.
"""
import sys


def run(args, out=None, err=None) -> int:
    from serving import model_config

    out = out or sys.stdout
    err = err or sys.stderr
    path, config, scan = model_config.write_model_server_config(
        args.serving_dir, output=args.output, versions=args.versions, base_path_prefix=args.base_path_prefix)
    for message in scan.skipped:
        print(f"genpipe: warning: {message}", file=err)
    print(f"Wrote {path} ({len(scan.models)} model{'s' if len(scan.models) != 1 else ''}, versions: "
          f"{args.versions}):", file=out)
    for entry in config.model_config_list.config:
        print(f"  {entry.name:<32} versions on disk {scan.models[entry.name]}  base_path {entry.base_path}", file=out)
    return 0
