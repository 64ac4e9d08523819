#!/usr/bin/env python3
"""Write deploy/secrets/ for docker-compose.yml and deploy/stack.yml: random passwords in
rabbitmq.env, postgres.env, minio.env, grafana.env, the matching services.env, and the
gateway's RSA signing key. Existing files are kept (delete one to regenerate it).

    python3 scripts/compose_secrets.py [--dir deploy/secrets]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def password() -> str:
    return secrets.token_urlsafe(24)  # URL-safe: it goes into amqp:// and postgresql:// URLs as is


def write(path: Path, lines: list[str], mode: int = 0o600) -> None:
    if path.exists():
        print(f"kept {path}")
        return
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / "deploy" / "secrets")
    out = parser.parse_args(argv).dir
    out.mkdir(parents=True, exist_ok=True)
    existing = {}
    for name in ("rabbitmq.env", "postgres.env", "minio.env"):
        if (out / name).exists():
            existing[name] = dict(
                line.split("=", 1) for line in (out / name).read_text().splitlines() if "=" in line
            )
    rabbit = existing.get("rabbitmq.env", {}).get("RABBITMQ_DEFAULT_PASS") or password()
    pg = existing.get("postgres.env", {}).get("POSTGRES_PASSWORD") or password()
    minio = existing.get("minio.env", {}).get("MINIO_ROOT_PASSWORD") or password()
    write(out / "rabbitmq.env", ["RABBITMQ_DEFAULT_USER=agentloop", f"RABBITMQ_DEFAULT_PASS={rabbit}"])
    write(out / "postgres.env", ["POSTGRES_USER=agentloop", "POSTGRES_DB=agentloop", f"POSTGRES_PASSWORD={pg}"])
    write(out / "minio.env", ["MINIO_ROOT_USER=agentloop", f"MINIO_ROOT_PASSWORD={minio}"])
    write(out / "grafana.env", ["GF_SECURITY_ADMIN_USER=admin", f"GF_SECURITY_ADMIN_PASSWORD={password()}"])
    write(
        out / "services.env",
        [
            f"BROKER__URL=amqp://agentloop:{rabbit}@rabbitmq:5672/",
            f"DATABASE__URL=postgresql+asyncpg://agentloop:{pg}@postgres:5432/agentloop",
            "S3__ACCESS_KEY=agentloop",
            f"S3__SECRET_KEY={minio}",
        ],
    )
    key = out / "gateway-signing.pem"
    if key.exists():
        print(f"kept {key}")
    else:
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
            check=True, capture_output=True,
        )
        # docker compose bind-mounts file secrets with the host mode; the services run as uid 10001.
        key.chmod(0o644)
        print(f"wrote {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
