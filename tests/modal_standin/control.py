"""Modal's control plane (``modal_proto.api_grpc.ModalClientBase``) as far as Parhelia's
use of the SDK reaches: apps, secrets, v2 volumes (blocks over ``blobs``), images (builds
recorded, never run), mounts of local sources, and sandboxes on both of modal 1.6.4's
paths (V1: GPU/PTY, ``SandboxCreate`` and a wait to be scheduled; V2: ``SandboxCreateV2``,
JWT-authenticated) with names, tags, list paging, wait/poll, terminate, tunnels and
time-range statistics. Sandboxes run as local processes (``tests.modal_host``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal_proto import api_grpc, api_pb2

from tests.modal_host import billing, sandboxes, state
from tests.modal_standin import blobs
from tests.modal_standin.rpc import Call, serve
from tests.modal_standin.service import Service, sandbox_of_task, task_id

GR = api_pb2.GenericResult
LIST_PAGE_SIZE = 25
"""Sandboxes per ``SandboxList`` page (Modal's own page size is not documented)."""
IMAGE_BUILDER_VERSION = "2025.06"
_GPUS = {"T4", "L4", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "H100", "H200", "B200"}
_V2_RPCS = ("SandboxCreateV2", "SandboxWaitV2", "SandboxTerminateV2", "SandboxGetFromNameV2",
            "SandboxListV2", "SandboxTagsGetV2", "SandboxTagsSetV2", "SandboxGetTaskIdV2",
            "SandboxGetTunnelsV2", "SandboxGetCommandRouterAccess")


def _check(self: ControlPlane, call: Call) -> None:
    self.service.check_token(call)
    if call.name in _V2_RPCS:
        self.service.verify_jwt(str(call.metadata.get("x-modal-auth-token") or ""))


def result_proto(sb_id: str) -> api_pb2.GenericResult | None:
    end = state.result(sb_id)
    if end is None:
        return None
    return GR(status=GR.GenericStatus.Value(f"GENERIC_STATUS_{end['status']}"),
              exitcode=int(end["exitcode"]), exception=str(end["exception"]))


@serve(api_grpc.ModalClientBase, lambda self: self.service.faults, _check)
class ControlPlane(api_grpc.ModalClientBase):
    def __init__(self, service: Service) -> None:
        self.service = service

    # -- client, auth, apps ----------------------------------------------------------------

    async def ClientHello(self, req: empty_pb2.Empty, call: Call) -> Any:
        return api_pb2.ClientHelloResponse(image_builder_version=IMAGE_BUILDER_VERSION)

    async def EnvironmentGetOrCreate(self, req: Any, call: Call) -> Any:
        """The default environment ("main"); its settings name the image builder."""
        name = req.deployment_name or "main"
        if name != "main":
            raise GRPCError(Status.NOT_FOUND, f"Environment '{name}' not found")
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id="en-main", metadata=api_pb2.EnvironmentMetadata(
                name="main", settings=api_pb2.EnvironmentSettings(
                    image_builder_version=IMAGE_BUILDER_VERSION)))

    async def AuthTokenGet(self, req: Any, call: Call) -> Any:
        return api_pb2.AuthTokenGetResponse(token=self.service.jwt({"sub": "client"}))

    async def AppGetOrCreate(self, req: Any, call: Call) -> Any:
        self.service.check_name(req.app_name, "App")
        create = req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
        app_id = self.service.app_id(req.app_name, create)
        return api_pb2.AppGetOrCreateResponse(
            app_id=app_id, handle_metadata=api_pb2.AppHandleMetadata(app_id=app_id))

    # -- secrets -------------------------------------------------------------------------

    async def SecretGetOrCreate(self, req: Any, call: Call) -> Any:
        if req.object_creation_type in (api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL,
                                        api_pb2.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP):
            secret_id = "st-" + uuid.uuid4().hex[:22]
            self.service.ephemeral_secrets[secret_id] = dict(req.env_dict)
            return api_pb2.SecretGetOrCreateResponse(secret_id=secret_id)
        name = req.deployment_name
        self.service.check_name(name, "Secret")
        path = self.root / "secrets" / f"{name}.json"
        creating = req.object_creation_type in (
            api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
            api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS)
        if path.exists() and req.object_creation_type == \
                api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
            raise GRPCError(Status.ALREADY_EXISTS, f"Secret '{name}' already exists")
        if not path.exists():
            if not creating:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' not found")
            state.write_json(path, dict(req.env_dict))
        values = state.read_json(path)
        missing = [k for k in req.required_keys if k not in values]
        if missing:
            raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' is missing required keys: "
                            f"{', '.join(missing)}")
        return api_pb2.SecretGetOrCreateResponse(
            secret_id=self.service.secret_id(name),
            metadata=api_pb2.SecretMetadata(name=name, keys=sorted(values)))

    @property
    def root(self) -> Path:
        return self.service.root

    # -- volumes (v2) --------------------------------------------------------------------

    async def VolumeGetOrCreate(self, req: Any, call: Call) -> Any:
        name = req.deployment_name
        self.service.check_name(name, "Volume")
        path = self.root / "volumes" / f"{name}.json"
        if not path.exists():
            if req.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"Volume '{name}' not found")
            version = req.version or api_pb2.VOLUME_FS_VERSION_V1
            state.write_json(path, {"version": int(version), "id": state.new_id("vo")})
        info = state.read_json(path)
        state.volume_dir(name).mkdir(parents=True, exist_ok=True)
        return api_pb2.VolumeGetOrCreateResponse(
            volume_id=info["id"], version=int(info["version"]),
            metadata=api_pb2.VolumeMetadata(version=int(info["version"]), name=name))

    async def VolumeDelete(self, req: Any, call: Call) -> Any:
        name = self.service.volume_by_id(req.volume_id)
        (self.root / "volumes" / f"{name}.json").unlink()
        shutil.rmtree(state.volume_dir(name), ignore_errors=True)
        return empty_pb2.Empty()

    def _volume_path(self, volume_id: str, path: str) -> Path:
        base = state.volume_dir(self.service.volume_by_id(volume_id))
        rel = PurePosixPath(path.strip("/") or ".")
        if any(part == ".." for part in rel.parts):
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid path {path!r}")
        return base / rel

    def _file_at(self, volume_id: str, path: str) -> Path | None:
        try:
            target = self._volume_path(volume_id, path)
        except GRPCError:
            return None
        return target if target.is_file() else None

    async def VolumeGetFile2(self, req: Any, call: Call) -> Any:
        target = self._volume_path(req.volume_id, req.path)
        if not target.is_file():
            raise GRPCError(Status.NOT_FOUND, f"No such file: {req.path}")
        size = target.stat().st_size
        count = (size + blobs.BLOCK_SIZE - 1) // blobs.BLOCK_SIZE
        urls = [f"{self.service.blob_url}/files/{req.volume_id}/{i}?path={quote(req.path)}"
                for i in range(count)]
        return api_pb2.VolumeGetFile2Response(get_urls=urls, size=size, start=0, len=size)

    async def VolumePutFiles2(self, req: Any, call: Call) -> Any:
        base = state.volume_dir(self.service.volume_by_id(req.volume_id))
        missing = []
        for fi, spec in enumerate(req.files):
            for bi, block in enumerate(spec.blocks):
                sha = block.contents_sha256.hex()
                if not blobs.has_block(sha):
                    missing.append(api_pb2.VolumePutFiles2Response.MissingBlock(
                        file_index=fi, block_index=bi,
                        put_url=f"{self.service.blob_url}/blocks/{sha}"))
        if missing:
            return api_pb2.VolumePutFiles2Response(missing_blocks=missing)
        targets = [(spec, self._volume_path(req.volume_id, spec.path)) for spec in req.files]
        if req.disallow_overwrite_existing_files:
            for spec, target in targets:
                if target.exists():
                    raise GRPCError(Status.ALREADY_EXISTS, f"{spec.path}: already exists")
        for spec, target in targets:
            await asyncio.to_thread(_assemble, base, target, spec)
        return api_pb2.VolumePutFiles2Response()

    async def VolumeListFiles2(self, req: Any, call: Call) -> AsyncIterator[Any]:
        base = state.volume_dir(self.service.volume_by_id(req.volume_id))
        start = self._volume_path(req.volume_id, req.path)
        entries = await asyncio.to_thread(_list_files, base, start, req.path, req.recursive)
        for i in range(0, len(entries), 1000):
            yield api_pb2.VolumeListFiles2Response(entries=entries[i:i + 1000])

    async def VolumeCopyFiles2(self, req: Any, call: Call) -> Any:
        """A copy on the service's side, with ``cp``'s reading of its arguments (as the
        fake's ``Volume.copy_files``): several sources go into ``dst_path`` as a directory;
        one source is copied to ``dst_path`` itself, or into it when it ends with ``/``."""
        into = len(req.src_paths) > 1 or req.dst_path.endswith("/")
        for src in req.src_paths:
            source = self._volume_path(req.volume_id, src)
            if not source.is_file():
                raise GRPCError(Status.NOT_FOUND, f"Source file not found: {src}")
            dst = self._volume_path(req.volume_id, req.dst_path)
            if into:
                dst = dst / source.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".tmp-{os.urandom(6).hex()}")
            await asyncio.to_thread(shutil.copyfile, source, tmp)
            os.replace(tmp, dst)
        return empty_pb2.Empty()

    async def VolumeRemoveFile2(self, req: Any, call: Call) -> Any:
        target = self._volume_path(req.volume_id, req.path)
        if target.is_dir():
            if not req.recursive:
                raise GRPCError(Status.INVALID_ARGUMENT, f"{req.path} is a directory")
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        else:
            raise GRPCError(Status.NOT_FOUND, f"No such file: {req.path}")
        return empty_pb2.Empty()

    # -- images and mounts: builds are recorded, never run ---------------------------------

    async def ImageGetOrCreate(self, req: Any, call: Call) -> Any:
        digest = hashlib.sha256(req.image.SerializeToString(deterministic=True)).hexdigest()
        image_id = f"im-{digest[:22]}"
        path = self.service.images / f"{image_id}.json"
        if path.exists() and not req.force_build:
            return api_pb2.ImageGetOrCreateResponse(
                image_id=image_id, result=GR(status=GR.GENERIC_STATUS_SUCCESS),
                metadata=api_pb2.ImageMetadata(image_builder_version=IMAGE_BUILDER_VERSION))
        state.write_json(path, {
            "image_id": image_id, "built_at": time.time(), "app_id": req.app_id,
            "dockerfile_commands": list(req.image.dockerfile_commands),
            "base_image_ids": [b.image_id for b in req.image.base_images],
            "secret_ids": list(req.image.secret_ids)})
        return api_pb2.ImageGetOrCreateResponse(image_id=image_id)

    async def ImageJoinStreaming(self, req: Any, call: Call) -> AsyncIterator[Any]:
        if not (self.service.images / f"{req.image_id}.json").exists():
            raise GRPCError(Status.NOT_FOUND, f"Image {req.image_id} not found")
        yield api_pb2.ImageJoinStreamingResponse(
            task_logs=[api_pb2.TaskLogs(data=f"(stand-in) build of {req.image_id} recorded\n",
                                        file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT)],
            entry_id="1")
        yield api_pb2.ImageJoinStreamingResponse(
            result=GR(status=GR.GENERIC_STATUS_SUCCESS), entry_id="2", eof=True,
            metadata=api_pb2.ImageMetadata(image_builder_version=IMAGE_BUILDER_VERSION))

    async def MountBatchedCheckExistence(self, req: Any, call: Call) -> Any:
        missing = [h for h in req.sha256_hex_hashes
                   if not (self.service.mounts / "blobs" / h).exists()]
        return api_pb2.MountBatchedCheckExistenceResponse(missing_sha256_hex_hashes=missing)

    async def MountPutFile(self, req: Any, call: Call) -> Any:
        target = self.service.mounts / "blobs" / req.sha256_hex
        if req.WhichOneof("data_oneof") == "data":
            if hashlib.sha256(req.data).hexdigest() != req.sha256_hex:
                raise GRPCError(Status.INVALID_ARGUMENT, "file hash mismatch")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(req.data)
        elif req.WhichOneof("data_oneof") == "data_blob_id":
            raise GRPCError(Status.INVALID_ARGUMENT, "blob uploads are not served by the "
                            "stand-in (files under 4 MiB only)")
        return api_pb2.MountPutFileResponse(exists=target.exists())

    async def MountGetOrCreate(self, req: Any, call: Call) -> Any:
        files = [{"filename": f.filename, "sha256_hex": f.sha256_hex, "mode": f.mode}
                 for f in req.files]
        digest = hashlib.sha256(repr(sorted((f["filename"], f["sha256_hex"]) for f in files))
                                .encode()).hexdigest()
        mount_id = f"mo-{digest[:22]}"
        state.write_json(self.service.mounts / f"{mount_id}.json", {"files": files})
        return api_pb2.MountGetOrCreateResponse(mount_id=mount_id)

    # -- sandboxes -----------------------------------------------------------------------

    async def SandboxCreate(self, req: Any, call: Call) -> Any:
        sb_id = await self._create(req.app_id, req.definition, list(req.tags), list(
            api_pb2.SecretSource(secret_id=s) for s in req.definition.secret_ids), v2=False)
        return api_pb2.SandboxCreateResponse(
            sandbox_id=sb_id, metadata=api_pb2.SandboxHandleMetadata(app_id=req.app_id))

    async def SandboxCreateV2(self, req: Any, call: Call) -> Any:
        sources = list(req.secret_sources) + [api_pb2.SecretSource(secret_id=s)
                                              for s in req.definition.secret_ids]
        sb_id = await self._create(req.app_id, req.definition, list(req.tags), sources,
                                   v2=True)
        return api_pb2.SandboxCreateV2Response(
            sandbox_id=sb_id, metadata=api_pb2.SandboxHandleMetadata(app_id=req.app_id))

    async def _create(self, app_id: str, d: Any, tags: list[Any], sources: list[Any],
                      *, v2: bool) -> str:
        if not app_id or self.service.app_name(app_id) is None:
            raise GRPCError(Status.NOT_FOUND, f"App {app_id!r} not found")
        if not 1 <= d.timeout_secs <= 86400:
            raise GRPCError(Status.INVALID_ARGUMENT,
                            "timeout must be between 1 second and 24 hours")
        if d.name and not sandboxes.NAME_RE.match(d.name):
            raise GRPCError(Status.INVALID_ARGUMENT, f"Invalid sandbox name {d.name!r}")
        gpu = _gpu(d.resources)
        secret_env: dict[str, str] = {}
        for source in sources:
            if source.HasField("env"):
                secret_env.update(source.env.contents)
            elif source.secret_id:
                secret_env.update(self.service.secret_values(source.secret_id))
        volumes: dict[str, Any] = {}
        for mount in d.volume_mounts:
            name = self.service.volume_by_id(mount.volume_id)
            volumes[mount.mount_path] = name if not (mount.sub_path or mount.read_only) else {
                "volume": name, "sub_path": mount.sub_path, "read_only": mount.read_only}
        image_id = d.image_id
        if image_id and not (self.service.images / f"{image_id}.json").exists():
            raise GRPCError(Status.NOT_FOUND, f"Image {image_id} not found")
        init_failure = self.service.faults.take(
            "SandboxCreateV2" if v2 else "SandboxCreate", "init_failure")
        new = sandboxes.NewSandbox(
            app_id=app_id, cmd=list(d.entrypoint_args), timeout=int(d.timeout_secs),
            name=d.name or None, tags={t.tag_name: t.tag_value for t in tags}, gpu=gpu,
            cpu=d.resources.milli_cpu / 1000 if d.resources.milli_cpu else None,
            memory=d.resources.memory_mb or None, workdir=d.workdir or None,
            image=image_id or None, image_env=self.service.image_env(image_id),
            volumes=volumes,
            unencrypted_ports=[p.port for p in d.open_ports.ports if p.unencrypted],
            extra={"v2": v2, "encrypted_ports": [p.port for p in d.open_ports.ports
                                                 if not p.unencrypted],
                   "network": _network(d), "outbound_policy": self._policy(d),
                   "mount_files": self.service.mount_files(list(d.mount_ids)),
                   "pty": d.pty_info.enabled})
        waits = gpu is not None and not self.service.faults.gpu_capacity
        try:
            sb_id = sandboxes.create(new, secret_env, start_now=not waits,
                                     inert=self.service.faults.inert,
                                     init_failure=str(init_failure.get("message") or
                                                      "Sandbox failed to initialize")
                                     if init_failure else "")
        except sandboxes.NameTaken:
            raise GRPCError(Status.ALREADY_EXISTS,
                            f"Sandbox with name '{d.name}' already exists in app") from None
        if waits:
            self.service.waiting_env[sb_id] = secret_env
        return sb_id

    def _policy(self, d: Any) -> list[dict[str, Any]]:
        """What is recorded of ``_experimental_outbound_policy``: domains, header templates
        and the name of the secret they are filled from (never its values)."""
        return [{"domain": r.domain, "headers": dict(r.headers),
                 "secret": self.service.secret_name(r.secret_id) if r.secret_id else None}
                for r in d.experimental_outbound_policy.header_replacements]

    def _sandbox(self, sb_id: str, *, v2: bool) -> dict[str, Any]:
        meta = state.sandbox_meta(sb_id)
        if meta is None or bool(meta.get("v2")) != v2:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sb_id} not found")
        return meta

    async def _wait(self, sb_id: str, timeout: float, v2: bool) -> Any:
        meta = self._sandbox(sb_id, v2=v2)
        deadline = time.monotonic() + max(0.0, min(timeout, 55.0))
        while (result := result_proto(sb_id)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        handle = api_pb2.SandboxHandleMetadata(app_id=meta["app_id"])
        if result is None:
            return api_pb2.SandboxWaitResponse(metadata=handle)
        handle.result.CopyFrom(result)
        return api_pb2.SandboxWaitResponse(result=result, metadata=handle)

    async def SandboxWait(self, req: Any, call: Call) -> Any:
        return await self._wait(req.sandbox_id, req.timeout, v2=False)

    async def SandboxWaitV2(self, req: Any, call: Call) -> Any:
        return await self._wait(req.sandbox_id, req.timeout, v2=True)

    def _task_id(self, req: Any, v2: bool) -> Any:
        self._sandbox(req.sandbox_id, v2=v2)
        result = result_proto(req.sandbox_id)
        if result is not None:
            return api_pb2.SandboxGetTaskIdResponse(task_result=result)
        if not sandboxes.scheduled(req.sandbox_id):
            return api_pb2.SandboxGetTaskIdResponse()
        return api_pb2.SandboxGetTaskIdResponse(task_id=task_id(req.sandbox_id))

    async def SandboxGetTaskId(self, req: Any, call: Call) -> Any:
        return self._task_id(req, v2=False)

    async def SandboxGetTaskIdV2(self, req: Any, call: Call) -> Any:
        return self._task_id(req, v2=True)

    def _terminate(self, sb_id: str, v2: bool) -> Any:
        self._sandbox(sb_id, v2=v2)
        existing = result_proto(sb_id)
        self.service.waiting_env.pop(sb_id, None)
        sandboxes.terminate(sb_id)
        return api_pb2.SandboxTerminateResponse(existing_result=existing)

    async def SandboxTerminate(self, req: Any, call: Call) -> Any:
        return self._terminate(req.sandbox_id, v2=False)

    async def SandboxTerminateV2(self, req: Any, call: Call) -> Any:
        return self._terminate(req.sandbox_id, v2=True)

    def _from_name(self, req: Any, v2: bool) -> Any:
        app_id = self.service.app_id(req.app_name, create=False)
        sb_id = sandboxes.by_name(app_id, req.sandbox_name)
        meta = state.sandbox_meta(sb_id) if sb_id else None
        if sb_id is None or meta is None or bool(meta.get("v2")) != v2 or (
                not req.include_terminated and state.returncode(sb_id) is not None):
            raise GRPCError(Status.NOT_FOUND,
                            f"Sandbox with name '{req.sandbox_name}' not found")
        return api_pb2.SandboxGetFromNameResponse(
            sandbox_id=sb_id, metadata=api_pb2.SandboxHandleMetadata(app_id=app_id))

    async def SandboxGetFromName(self, req: Any, call: Call) -> Any:
        return self._from_name(req, v2=False)

    async def SandboxGetFromNameV2(self, req: Any, call: Call) -> Any:
        return self._from_name(req, v2=True)

    def _list(self, req: Any, versions: tuple[bool, ...]) -> Any:
        wanted = {t.tag_name: t.tag_value for t in req.tags}
        found = []
        for sb_id in state.all_sandboxes():
            meta = state.sandbox_meta(sb_id)
            if meta is None or bool(meta.get("v2")) not in versions:
                continue
            if req.app_id and meta["app_id"] != req.app_id:
                continue
            if any(meta["tags"].get(k) != v for k, v in wanted.items()):
                continue
            ended = state.returncode(sb_id) is not None
            if ended and not req.include_finished:
                continue
            if req.before_timestamp and meta["created_at"] >= req.before_timestamp:
                continue
            found.append(meta)
        found.sort(key=lambda m: m["created_at"], reverse=True)
        infos = []
        for meta in found[:LIST_PAGE_SIZE]:
            info = api_pb2.SandboxInfo(
                id=meta["id"], created_at=meta["created_at"], app_id=meta["app_id"],
                name=meta.get("name") or "",
                tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v)
                      for k, v in meta["tags"].items()],
                metadata=api_pb2.SandboxHandleMetadata(app_id=meta["app_id"]))
            info.task_info.id = task_id(meta["id"])
            if (result := result_proto(meta["id"])) is not None:
                info.task_info.result.CopyFrom(result)
            infos.append(info)
        return api_pb2.SandboxListResponse(sandboxes=infos)

    async def SandboxList(self, req: Any, call: Call) -> Any:
        return self._list(req, (False,))

    async def SandboxListV2(self, req: Any, call: Call) -> Any:
        return self._list(req, (False, True))  # lists V1 and V2 sandboxes (modal 1.6.4)

    def _tags(self, sb_id: str, v2: bool) -> Any:
        meta = self._sandbox(sb_id, v2=v2)
        return api_pb2.SandboxTagsGetResponse(tags=[
            api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in meta["tags"].items()])

    async def SandboxTagsGet(self, req: Any, call: Call) -> Any:
        return self._tags(req.sandbox_id, v2=False)

    async def SandboxTagsGetV2(self, req: Any, call: Call) -> Any:
        return self._tags(req.sandbox_id, v2=True)

    def _set_tags(self, req: Any, v2: bool) -> Any:
        meta = self._sandbox(req.sandbox_id, v2=v2)
        meta["tags"] = {t.tag_name: t.tag_value for t in req.tags}
        state.write_json(state.sandbox_dir(req.sandbox_id) / "meta.json", meta)
        return empty_pb2.Empty()

    async def SandboxTagsSet(self, req: Any, call: Call) -> Any:
        return self._set_tags(req, v2=False)

    async def SandboxTagsSetV2(self, req: Any, call: Call) -> Any:
        return self._set_tags(req, v2=True)

    async def _tunnels(self, req: Any, v2: bool) -> Any:
        meta = self._sandbox(req.sandbox_id, v2=v2)
        ports = list(meta.get("unencrypted_ports") or [])
        deadline = time.monotonic() + max(0.0, min(float(req.timeout or 0), 55.0))
        while True:
            local = {p: sandboxes.tunnel_port(req.sandbox_id, p) for p in ports}
            if all(v is not None for v in local.values()) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if any(v is None for v in local.values()):
            return api_pb2.SandboxGetTunnelsResponse(result=GR(status=GR.GENERIC_STATUS_TIMEOUT))
        return api_pb2.SandboxGetTunnelsResponse(
            result=GR(status=GR.GENERIC_STATUS_SUCCESS),
            tunnels=[api_pb2.TunnelData(host="127.0.0.1", port=443, unencrypted_host="127.0.0.1",
                                        unencrypted_port=int(local[p] or 0), container_port=p)
                     for p in ports])

    async def SandboxGetTunnels(self, req: Any, call: Call) -> Any:
        return await self._tunnels(req, v2=False)

    async def SandboxGetTunnelsV2(self, req: Any, call: Call) -> Any:
        return await self._tunnels(req, v2=True)

    def _router_access(self, sb_id: str) -> tuple[str, str]:
        if state.returncode(sb_id) is not None:
            raise GRPCError(Status.FAILED_PRECONDITION, "Sandbox already finished")
        if not sandboxes.scheduled(sb_id):
            raise GRPCError(Status.FAILED_PRECONDITION, "Sandbox is not scheduled yet")
        return self.service.jwt({"task_id": task_id(sb_id)}), self.service.router_url

    async def SandboxGetCommandRouterAccess(self, req: Any, call: Call) -> Any:
        sb_id = req.sandbox_id or sandbox_of_task(req.task_id)
        self._sandbox(sb_id, v2=True)
        jwt, url = self._router_access(sb_id)
        return api_pb2.SandboxGetCommandRouterAccessResponse(jwt=jwt, url=url)

    async def TaskGetCommandRouterAccess(self, req: Any, call: Call) -> Any:
        sb_id = sandbox_of_task(req.task_id)
        if state.sandbox_meta(sb_id) is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id} not found")
        jwt, url = self._router_access(sb_id)
        return api_pb2.TaskGetCommandRouterAccessResponse(jwt=jwt, url=url)

    async def SandboxGetTimeRangeStats(self, req: Any, call: Call) -> Any:
        since = req.since.ToDatetime(tzinfo=UTC)
        until = req.until.ToDatetime(tzinfo=UTC) if req.HasField("until") else None
        try:
            end = billing.check_range(since, until)
        except billing.InvalidRange as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        groups = []
        for tags, costs in billing.group_costs(req.app_id, since, end, list(req.group_by_tags),
                                               dict(req.tags)):
            group = api_pb2.SandboxStatsGroup(
                cost_str=str(sum(costs.values(), Decimal(0))),
                cost_by_resource_str={k: str(v) for k, v in costs.items()})
            for name, value in tags.items():
                if value is None:
                    group.tags[name].SetInParent()
                else:
                    group.tags[name].value = value
            groups.append(group)
        return api_pb2.SandboxGetTimeRangeStatsResponse(groups=groups)


def _gpu(resources: Any) -> str | None:
    if not resources.HasField("gpu_config"):
        return None
    cfg = resources.gpu_config
    name = (cfg.gpu_type or "").upper()
    if not name:
        return None
    if name not in _GPUS or not 1 <= (cfg.count or 1) <= 8:
        raise GRPCError(Status.INVALID_ARGUMENT, f"Invalid GPU type: {name}")
    return f"{name}:{cfg.count}" if (cfg.count or 1) > 1 else name


def _network(d: Any) -> dict[str, Any]:
    access = d.network_access
    kind = api_pb2.NetworkAccess.NetworkAccessType.Name(access.network_access_type)
    return {"type": kind.removeprefix("NETWORK_ACCESS_TYPE_") if kind else "OPEN",
            "allowed_cidrs": list(access.allowed_cidrs),
            "allowed_domains": list(access.allowed_domains),
            "inbound_cidr_allowlist": list(d.inbound_cidr_allowlist)}


def _assemble(base: Path, target: Path, spec: Any) -> None:
    """The committed file from its blocks. modal 1.6.4 uploads each block without its
    trailing zero bytes (``modal._utils.blob_utils.FileUploadBlock.end``): the service puts
    them back, each block filling its 8 MiB and the last one the file's ``size``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as out:
        for index, block in enumerate(spec.blocks):
            length = min(blobs.BLOCK_SIZE, spec.size - index * blobs.BLOCK_SIZE)
            with open(blobs.block_path(block.contents_sha256.hex()), "rb") as fh:
                shutil.copyfileobj(fh, out)
                stored = fh.tell()
            if stored < length:
                out.write(bytes(length - stored))
    if spec.HasField("mode"):
        os.chmod(tmp, spec.mode & 0o7777)
    os.replace(tmp, target)


def _list_files(base: Path, start: Path, path: str, recursive: bool) -> list[Any]:
    kinds = api_pb2.FileEntry.FileType
    if start.is_file():
        st = start.stat()
        return [api_pb2.FileEntry(path=start.relative_to(base).as_posix(), type=kinds.FILE,
                                  mtime=int(st.st_mtime), size=st.st_size)]
    if not start.is_dir():
        raise GRPCError(Status.NOT_FOUND, f"No such file or directory: {path}")
    out = []
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
        here = Path(dirpath)
        for name in dirnames:
            out.append(api_pb2.FileEntry(path=(here / name).relative_to(base).as_posix(),
                                         type=kinds.DIRECTORY))
        for name in sorted(filenames):
            if name.startswith(".tmp-"):
                continue
            try:
                st = (here / name).stat()
            except FileNotFoundError:
                continue
            out.append(api_pb2.FileEntry(path=(here / name).relative_to(base).as_posix(),
                                         type=kinds.FILE, mtime=int(st.st_mtime),
                                         size=st.st_size))
        if not recursive:
            break
    return out
