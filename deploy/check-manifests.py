#!/usr/bin/env python3
"""Checks what schema validation cannot, on rendered manifests read from standard input:

    kubectl kustomize deploy/overlays/production | deploy/check-manifests.py

- every container (init containers too) runs restricted: non-root, no privilege escalation,
  read-only root, all capabilities dropped, seccomp RuntimeDefault, and has CPU and memory
  requests and a memory limit;
- gateway pods have liveness and readiness probes, data planes a startup probe too, and no
  Service links (they would inject GATEWAY_* variables);
- a data plane's terminationGracePeriodSeconds exceeds its drain delay plus drain timeout;
- a Deployment scaled by an autoscaler sets no replicas of its own;
- every PodDisruptionBudget and Service selects some workload, and a Service's named
  targetPorts exist on the workloads it selects;
- the data plane's Service exposes both its plain-HTTP and its TLS listener (http, https).

Exits 1 and lists every problem found. Needs PyYAML (a dependency of kubernetes-validate).
"""

import re
import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# The binaries' defaults, for when the ConfigMap does not set the drain variables.
DEFAULT_DRAIN_DELAY = 5.0
DEFAULT_DRAIN_TIMEOUT = 30.0


def seconds(text):
    """A humantime duration such as 5s, 500ms, 1m30s, in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    problems = []
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("ConfigMap", [])}
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind.get("HorizontalPodAutoscaler", [])
        if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    if not workloads:
        problems.append("no workloads rendered")

    for w in workloads:
        name = f'{w["kind"].lower()}/{w["metadata"]["name"]}'
        pod = w["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        gateway = w["metadata"]["name"].startswith("gateway-") and w["kind"] == "Deployment"
        dataplane = w["metadata"]["name"] == "gateway-dataplane"

        containers = pod.get("initContainers", []) + pod["containers"]
        for c in containers:
            where = f'{name} container {c["name"]}'
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                problems.append(f"{where}: runAsNonRoot is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            resources = c.get("resources", {})
            for kind, key in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")]:
                if key not in resources.get(kind, {}):
                    problems.append(f"{where}: no resources.{kind}.{key}")

        if gateway:
            main_container = pod["containers"][0]
            probes = ["livenessProbe", "readinessProbe"] + (["startupProbe"] if dataplane else [])
            for probe in probes:
                if probe not in main_container:
                    problems.append(f"{name}: no {probe}")
            if pod.get("enableServiceLinks") is not False:
                problems.append(f"{name}: enableServiceLinks is not false")

        if dataplane:
            env = {}
            for source in pod["containers"][0].get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None:
                    if ref not in config_maps:
                        problems.append(f"{name}: ConfigMap {ref} is not rendered")
                    env.update(config_maps.get(ref, {}))
            for item in pod["containers"][0].get("env", []):
                if "value" in item:
                    env[item["name"]] = item["value"]
            try:
                delay = seconds(env["GATEWAY_DRAIN_DELAY"]) if "GATEWAY_DRAIN_DELAY" in env else DEFAULT_DRAIN_DELAY
                timeout = seconds(env["GATEWAY_DRAIN_TIMEOUT"]) if "GATEWAY_DRAIN_TIMEOUT" in env else DEFAULT_DRAIN_TIMEOUT
            except ValueError as error:
                problems.append(f"{name}: {error}")
            else:
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace <= delay + timeout:
                    problems.append(
                        f"{name}: terminationGracePeriodSeconds {grace} does not exceed "
                        f"drain delay {delay:g}s + drain timeout {timeout:g}s"
                    )

        if w["kind"] == "Deployment" and w["metadata"]["name"] in scaled and "replicas" in w["spec"]:
            problems.append(f"{name}: scaled by a HorizontalPodAutoscaler but sets spec.replicas")

    pod_labels = [w["spec"]["template"]["metadata"].get("labels", {}) for w in workloads]
    pod_ports = [
        {p["name"] for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
        for w in workloads
    ]
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selector = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not any(selects(selector, labels) for labels in pod_labels):
            problems.append(f'poddisruptionbudget/{pdb["metadata"]["name"]}: selects no workload')
    for svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector", {})
        if not any(selects(selector, labels) for labels in pod_labels):
            problems.append(f'service/{svc["metadata"]["name"]}: selects no workload')
        named = {
            port
            for labels, ports in zip(pod_labels, pod_ports)
            if selects(selector, labels)
            for port in ports
        }
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and target not in named:
                problems.append(
                    f'service/{svc["metadata"]["name"]}: targetPort {target} is no container port '
                    "of the workloads it selects"
                )
        if svc["metadata"]["name"] == "gateway-dataplane":
            exposed = {port.get("name") for port in svc["spec"].get("ports", [])}
            for wanted in ["http", "https"]:
                if wanted not in exposed:
                    problems.append(f"service/gateway-dataplane: does not expose port {wanted}")

    for problem in problems:
        print(f"check-manifests: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-manifests: {len(docs)} resources, {len(workloads)} workloads: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
