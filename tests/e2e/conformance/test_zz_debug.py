import json, subprocess, time
from pathlib import Path
from test_conformance_e2e import mesh, _cli, _api, _substituted, DATA, _converged, _pods  # noqa
from harness import gateway_address, send
from cases import Expect

def test_debug(mesh, tmp_path: Path) -> None:
    api = _api(mesh)
    f = _substituted(DATA / "tests" / "backendtlspolicy-san.yaml", tmp_path)
    _cli(mesh, "apply", "-f", str(f))
    _converged(api)
    time.sleep(5)
    addr = gateway_address(api, "gateway-conformance-infra", "same-namespace")
    a = send(addr, 80, Expect("/backendtlspolicy-san-dns", host="abc.example.com"))
    print("ANSWER", a.status, a.headers, a.body[:300])
    for p in mesh.pods():
        if "tls-backend" in str(p["name"]):
            print("POD", p)
    logs = mesh.state_dir / "logs"
    for name in ("tls-backend-0.gateway-conformance-infra.log", "tls-backend-0.gateway-conformance-infra.sidecar.log"):
        print("LOG", name, (logs / name).read_text()[-1500:])
    print(subprocess.run(["bash", "-c", "grep -i tls-backend " + str(logs / "supervisor.log") + " | tail -20"], capture_output=True, text=True).stdout)
    pods = _pods(mesh)
    gw = [v for k, v in pods.items() if "same-namespace" in k]
    print("GW", gw[:1])
    out = subprocess.run(["bash", "-c", "for n in $(ip netns list | awk '{print $1}'); do if ip netns exec $n curl -s -m1 127.0.0.1:15000/server_info 2>/dev/null | grep -q same-namespace-istio; then ip netns exec $n curl -s '127.0.0.1:15000/config_dump?include_eds' > /tmp/gwdump.json; ip netns exec $n curl -s '127.0.0.1:15000/clusters' > /tmp/gwclusters.txt; echo found $n; fi; done"], capture_output=True, text=True)
    print(out.stdout, out.stderr[-500:])
    print(json.dumps(api.get("apis/gateway.networking.k8s.io/v1/namespaces/gateway-conformance-infra/backendtlspolicies/san-dns"), indent=1)[:3000])
