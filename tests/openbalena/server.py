#!/usr/bin/env python3
"""Replay of open-balena-api's device API, for tests/openbalena.

Answers as open-balena-api v43.7.7 answered when it was run by hand (recorded/, INDEX.md
there): every answer's status, content type and body come from a recorded exchange, with the
device's own values put in (uuid, ids, keys, release). The rules deciding which answer applies
(which key may do what, which report is refused) are the ones the recordings show. The real
server's code is not here and is not needed: this is the one stand-in issue 19 accepts, kept
honest by re-recording whenever the by-hand run differs.

Device API: POST /device/register, GET /v6/device (key exchange), POST
/api-key/device/:id/device-key, GET /device/v3/:uuid/state (ETag, If-None-Match), PATCH
/device/v3/state, POST /device/v2/:uuid/log-stream, GET /os/v1/config, GET /auth/v1/token
(ES256 registry tokens the real docker-registry verifies).

Test control (ours, not the server's), under /_replay/: POST release, POST fault, GET device,
GET logs, GET requests. The database is a JSON file, so the server can be stopped (the
device sees a refused connection, as with the real one) and started again with what it knew.

usage: server.py --port N --db FILE --registry HOST:PORT --token-key PEM [--builder-token T]
"""
import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDED = os.path.join(HERE, 'recorded')
ISSUER = 'api.balenadev.io'
OS_RANGE = (2, 11, 0)
UPDATE_STATUS = ['rejected', 'aborted', 'downloading', 'downloaded', 'applying changes', 'done']
V3_DEVICE_FIELDS = ['status', 'is_online', 'os_version', 'os_variant', 'supervisor_version',
                    'provisioning_progress', 'provisioning_state', 'ip_address', 'mac_address',
                    'api_port', 'api_secret', 'cpu_id', 'is_undervolted']
METRICS = ['memory_usage', 'memory_total', 'storage_block_device', 'storage_usage',
           'storage_total', 'cpu_temp', 'cpu_usage']


def recorded(name):
    """(status, content type or None, body bytes) of a recorded answer."""
    with open(os.path.join(RECORDED, name)) as f:
        r = json.load(f)['response']
    ctype = next((v for k, v in r['headers'] if k.lower() == 'content-type'), None)
    body = (r.get('body_raw') or '').encode()
    return r['status'], ctype, body


def recorded_json(name):
    with open(os.path.join(RECORDED, name)) as f:
        return json.load(f)['response']['body']


# The answers, by what they mean (file names: recorded/INDEX.md).
API_KEY_REQUIRED = recorded('22-register-bad-provisioning-key.json')   # 401 {"error":...}
EMPTY_401 = recorded('26-register-wrong-application.json')             # 401, no body
BAD_JSON = recorded('27-register-invalid-json.json')                   # 400 HTML
UUID_CONFLICT = recorded('21-register-again-conflict.json')            # 409 text
NO_DEVICE_TYPE = recorded('24-register-missing-device-type.json')      # 400
UNKNOWN_TYPE = recorded('25-register-unknown-device-type.json')        # 404
OS_TOO_LOW = recorded('10-register-fleetos-osversion.json')            # 403
OS_MISSING = recorded('11-register-osversion-probe-5.json')            # 403
REGISTERED = recorded('20-register.json')                              # 201
DEVICE_ROW = recorded_json('30-keyexchange-get-device-with-device-key.json')['d'][0]
NO_ROWS = recorded('33-keyexchange-get-device-unknown-uuid.json')      # 200 {"d":[]}
STATE_304 = recorded('41-state-v3-get-if-none-match.json')
UNKNOWN_UUID_STATE = recorded('44-state-v3-get-unknown-uuid.json')     # 304, no ETag
PATCHED = recorded('54-state-v3-patch-running.json')                   # 200, no body
CHECK_CONSTRAINT = recorded('65-state-v3-patch-bad-update-status.json')
LOGS_STORED = recorded('70-log-stream-ndjson.json')                     # 201
LOGS_WRONG_TYPE = recorded('72-log-stream-wrong-content-type.json')     # 400 HTML
LOGS_CHARSET = recorded('72b-log-stream-ndjson-charset.json')           # 415
OS_CONFIG = recorded('91-os-config-device-key.json')
TOKEN_CLAIMS = recorded_json('81-auth-token-device-pull.json')          # {"token": ...}
# A route the server does not have (PATCH /device/v3/tags, tried by hand): 404, no body.
NO_ROUTE = (404, None, b'')
STATE_TEMPLATE = recorded_json('40-state-v3-get.json')


def express_etag(body):
    """Express's weak ETag: W/"<length hex>-<base64 SHA-1, no padding>"."""
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode().rstrip('=')
    return 'W/"%x-%s"' % (len(body), digest)


def js_json(value):
    """JSON.stringify's bytes."""
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False).encode()


def os_version_ok(version):
    """The recorded verdicts: balenaOS/resinOS or bare semver >= 2.11.0 (build metadata and
    balena's .rev/.prod suffixes allowed); anything else, fleetOS included, is refused."""
    m = re.fullmatch(r'(?:(?:balena|resin)\s*os\s+)?v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?'
                     r'(?:[+.][0-9A-Za-z.+-]*)?', version.strip(), re.I)
    if not m:
        return False
    v = tuple(int(x) for x in m.groups()[:3])
    return v > OS_RANGE or (v == OS_RANGE and m.group(4) is None)


def libtrust_kid(public_key):
    """docker-registry's key id: base32 of the first 30 bytes of SHA-256 of the DER key,
    in groups of four."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip('=')
    return ':'.join(s[i:i + 4] for i in range(0, len(s), 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip('=')


class Db:
    """What the server knows, kept in a JSON file across restarts."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        if os.path.exists(path):
            with open(path) as f:
                self.d = json.load(f)
        else:
            self.d = {
                'fleet': {'id': 1, 'uuid': '1de4f69f37104cb588d1901fb803b36f',
                          'name': 'fleetos-test', 'device_type': 'generic-amd64'},
                'provisioning_keys': ['d62hpjw2fKZQMN16BRFXSiIBkOdxUK9Y'],
                'device_types': ['generic-amd64', 'raspberrypi4-64', 'raspberrypi3'],
                'devices': {}, 'releases': {}, 'target': None, 'config': {},
                'next_id': 10, 'faults': {}, 'requests': [],
            }
            self.save()

    def save(self):
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.d, f)
        os.replace(tmp, self.path)

    def next_id(self):
        self.d['next_id'] += 1
        return self.d['next_id']

    def device_by_key(self, key):
        return next((d for d in self.d['devices'].values() if d['api_key'] == key), None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'replay'

    def log_message(self, fmt, *args):
        sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), fmt % args))

    # --- plumbing ---------------------------------------------------------------------
    def answer(self, rec, body=None, etag=None):
        status, ctype, recorded_body = rec
        body = recorded_body if body is None else body
        self.send_response(status)
        if ctype and body:
            self.send_header('Content-Type', ctype)
        if etag:
            self.send_header('ETag', etag)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        with DB.lock:
            DB.d['seq'] = DB.d.get('seq', 0) + 1
            DB.d['requests'].append({'seq': DB.d['seq'], 'method': self.command, 'path': self.path,
                                     'status': status, 'if_none_match':
                                     self.headers.get('If-None-Match')})
            del DB.d['requests'][:-400]
            DB.save()

    def body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def bearer(self):
        auth = self.headers.get('Authorization', '')
        return auth[7:] if auth.startswith('Bearer ') else None

    def json_body(self):
        try:
            return json.loads(self.body() or b'null')
        except ValueError:
            return ValueError

    # --- routes -----------------------------------------------------------------------
    def do_GET(self):
        url = urlsplit(self.path)
        p = url.path
        m = re.fullmatch(r'/device/v3/([0-9a-f]+)/state', p)
        if m:
            return self.state_get(m.group(1))
        if p == '/v6/device':
            return self.device_get(unquote(url.query))
        if p.rstrip('/') == '/os/v1/config':
            return self.answer(OS_CONFIG)
        if p == '/auth/v1/token':
            return self.token(parse_qs(url.query))
        if p.startswith('/_replay/'):
            return self.control_get(p)
        return self.answer(EMPTY_401)

    def do_POST(self):
        p = urlsplit(self.path).path
        if p == '/device/register':
            return self.register()
        m = re.fullmatch(r'/device/v2/([0-9a-f]+)/log-stream', p)
        if m:
            return self.log_stream(m.group(1))
        if re.fullmatch(r'/api-key/device/\d+/device-key', p):
            # Recorded: neither the provisioning key nor a stranger's may (34, 36).
            self.body()
            return self.answer(EMPTY_401)
        if p.startswith('/_replay/'):
            return self.control_post(p)
        self.body()
        return self.answer(EMPTY_401)

    def do_PATCH(self):
        if urlsplit(self.path).path == '/device/v3/state':
            return self.state_patch()
        self.body()
        return self.answer(NO_ROUTE)

    # --- registration -----------------------------------------------------------------
    def register(self):
        body = self.json_body()
        if body is ValueError:
            return self.answer(BAD_JSON)
        with DB.lock:
            if self.bearer() not in DB.d['provisioning_keys']:
                return self.answer(API_KEY_REQUIRED)
            if not isinstance(body, dict) or str(body.get('application')) != str(DB.d['fleet']['id']):
                return self.answer(EMPTY_401)
            if body.get('device_type') is None:
                return self.answer(NO_DEVICE_TYPE)
            if body['device_type'] not in DB.d['device_types']:
                return self.answer(UNKNOWN_TYPE, js_json('Unknown device type %s' % body['device_type']))
            uuid = body.get('uuid')
            if uuid in DB.d['devices']:
                return self.answer(UUID_CONFLICT)
            name = 'device-%s' % uuid[:7]
            os_version = body.get('os_version')
            if os_version is None and body.get('supervisor_version') is not None:
                return self.answer(OS_MISSING, js_json(
                    'Device %s is too old to satisfy required version range: >=2.11.0' % name))
            if os_version is not None and not os_version_ok(os_version):
                return self.answer(OS_TOO_LOW, js_json(
                    'Device %s has OS version %s but needs to satisfy version range: >=2.11.0'
                    % (name, os_version)))
            key = body.get('api_key') or uuidlib.uuid4().hex
            device = {'id': DB.next_id(), 'uuid': uuid, 'api_key': key, 'device_name': name,
                      'device_type': body['device_type'], 'is_running__release': None,
                      'update_status': None, 'installs': {}, 'logs': []}
            for k in ('supervisor_version', 'os_version', 'os_variant', 'mac_address'):
                device[k] = body.get(k)
            DB.d['devices'][uuid] = device
            DB.save()
            return self.answer(REGISTERED, js_json({'id': device['id'], 'uuid': uuid, 'api_key': key}))

    def device_get(self, query):
        m = re.search(r"\$filter=uuid eq '([0-9a-f]+)'", query)
        with DB.lock:
            caller = DB.device_by_key(self.bearer())
            if caller is None:
                # Recorded: the provisioning key cannot read devices (31), nor can a bad key (32).
                return self.answer(EMPTY_401)
            device = DB.d['devices'].get(m.group(1)) if m else None
            if device is None or device['uuid'] != caller['uuid']:
                return self.answer(NO_ROWS)
            row = dict(DEVICE_ROW, id=device['id'], uuid=device['uuid'],
                       device_name=device['device_name'])
            return self.answer(NO_ROWS, js_json({'d': [row]}))

    # --- target state -----------------------------------------------------------------
    def target_document(self, device):
        fleet = DB.d['fleet']
        template = next(iter(STATE_TEMPLATE.values()))
        app_template = next(iter(template['apps'].values()))
        releases = {}
        commit = DB.d['target']
        if commit:
            r = DB.d['releases'][commit]
            services = {}
            for name, s in r['services'].items():
                services[name] = {'id': s['id'], 'image_id': s['image_id'],
                                  'image': '%s@%s' % (s['location'], s['digest']),
                                  'environment': {}, 'labels': {},
                                  'composition': s.get('composition', {})}
            releases[commit] = {'id': r['id'], 'services': services}
        app = {k: app_template[k] for k in ('is_host', 'class')}
        app = {'id': fleet['id'], 'name': fleet['name'], **app, 'releases': releases}
        # Recorded (124): the fleet's variables first, the server's RESIN_ default after them.
        config = dict(DB.d['config'])
        for k, v in template['config'].items():
            config.setdefault(k, v)
        return {device['uuid']: {'name': device['device_name'], 'apps': {fleet['uuid']: app},
                                 'config': config}}

    def state_get(self, uuid):
        with DB.lock:
            fault = DB.d['faults'].get('state')
            device = DB.d['devices'].get(uuid)
            if device is None:
                return self.answer(UNKNOWN_UUID_STATE)
            if self.bearer() != device['api_key']:
                return self.answer(EMPTY_401)
            if fault == '500':
                return self.answer((500, 'text/html; charset=utf-8', b'Internal Server Error'))
            if fault == 'garbage':
                return self.answer((200, 'application/json; charset=utf-8', b'{"' + uuid.encode() + b'": {"apps": [}'))
            if fault == 'unparsable':
                doc = self.target_document(device)
                next(iter(doc[uuid]['apps'].values()))['releases'] = 'not an object'
                return self.answer((200, 'application/json; charset=utf-8', js_json(doc)))
            body = js_json(self.target_document(device))
            etag = express_etag(body)
            if self.headers.get('If-None-Match') == etag:
                return self.answer(STATE_304, b'', etag=etag)
            return self.answer((200, 'application/json; charset=utf-8', body), etag=etag)

    def state_patch(self):
        body = self.json_body()
        if body is ValueError:
            return self.answer(BAD_JSON)
        with DB.lock:
            caller = DB.device_by_key(self.bearer())
            if caller is None:
                return self.answer(API_KEY_REQUIRED)
            if not isinstance(body, dict):
                return self.answer(EMPTY_401)
            if not body:
                return self.answer(PATCHED)
            fleet = DB.d['fleet']
            for uuid, state in body.items():
                if uuid != caller['uuid'] or not isinstance(state, dict):
                    return self.answer(EMPTY_401)
                for app_uuid, app in (state.get('apps') or {}).items():
                    if app_uuid != fleet['uuid']:
                        return self.answer(EMPTY_401)
                    named = set((app.get('releases') or {}).keys())
                    if app.get('release_uuid'):
                        named.add(app['release_uuid'])
                    for commit in named:
                        r = DB.d['releases'].get(commit)
                        if r is None or r['status'] != 'success':
                            return self.answer(EMPTY_401)
                    for commit, rel in (app.get('releases') or {}).items():
                        locations = {s['location'] for s in DB.d['releases'][commit]['services'].values()}
                        for svc in (rel.get('services') or {}).values():
                            if svc.get('image', '').split('@', 1)[0] not in locations:
                                return self.answer(EMPTY_401)
                        status = rel.get('update_status')
                        if status is not None and status not in UPDATE_STATUS:
                            return self.answer(CHECK_CONSTRAINT)
            device = caller
            state = body[device['uuid']]
            for k in V3_DEVICE_FIELDS + METRICS:
                if k in state:
                    device[k] = state[k]
            app = (state.get('apps') or {}).get(fleet['uuid'])
            if app is not None:
                if app.get('release_uuid') in DB.d['releases']:
                    device['is_running__release'] = app['release_uuid']
                statuses = [r['update_status'] for r in (app.get('releases') or {}).values()
                            if r.get('update_status') is not None]
                if statuses:
                    device['update_status'] = min(statuses, key=UPDATE_STATUS.index)
                seen = set()
                for commit, rel in (app.get('releases') or {}).items():
                    for name, svc in (rel.get('services') or {}).items():
                        key = '%s/%s' % (commit, name)
                        seen.add(key)
                        old = device['installs'].get(key, {})
                        progress = svc['download_progress'] if 'download_progress' in svc \
                            else old.get('download_progress')
                        device['installs'][key] = {'release': commit, 'service': name,
                                                   'image': svc['image'].split('@', 1)[0],
                                                   'status': svc['status'],
                                                   'download_progress': progress}
                for key, inst in device['installs'].items():
                    if key not in seen:
                        inst['status'] = 'deleted'
            DB.save()
            return self.answer(PATCHED)

    # --- logs -------------------------------------------------------------------------
    def log_stream(self, uuid):
        data = self.body()
        with DB.lock:
            device = DB.d['devices'].get(uuid)
            if device is None or self.bearer() != device['api_key']:
                return self.answer(API_KEY_REQUIRED)
            ctype = self.headers.get('Content-Type', '')
            if ctype.startswith('application/x-ndjson') and ctype != 'application/x-ndjson':
                return self.answer(LOGS_CHARSET)
            if ctype != 'application/x-ndjson':
                return self.answer(LOGS_WRONG_TYPE)
            now = int(time.time() * 1000)
            for row in data.decode('utf-8', 'replace').split('\n'):
                if not row.strip():
                    continue
                try:
                    line = json.loads(row)
                except ValueError:
                    DB.save()
                    return self.answer(recorded('74-log-stream-garbage-line.json'),
                                       ('Could not parse row %s' % row[:40]).encode())
                # Recorded (73): entries the server cannot use are dropped without a word.
                if not isinstance(line, dict) or line.get('uuid') or \
                        not isinstance(line.get('message'), str) or \
                        not isinstance(line.get('timestamp'), (int, float)):
                    continue
                kept = {'createdAt': now, 'timestamp': line['timestamp'],
                        'isSystem': line.get('isSystem') is True,
                        'isStdErr': line.get('isStdErr') is True, 'message': line['message']}
                if isinstance(line.get('serviceId'), int):
                    kept['serviceId'] = line['serviceId']
                device['logs'].append(kept)
            DB.save()
            return self.answer(LOGS_STORED)

    # --- registry tokens --------------------------------------------------------------
    def token(self, query):
        auth = self.headers.get('Authorization', '')
        subject, grant = None, set()
        if auth.startswith('Basic '):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(':')
            with DB.lock:
                device = DB.d['devices'].get(user[2:]) if user.startswith('d_') else None
                if user == 'builder' and password == ARGS.builder_token:
                    subject, grant = user, {'pull', 'push'}
                elif device is not None and device['api_key'] == password:
                    subject, grant = user, {'pull'}
                else:
                    return self.answer(EMPTY_401)
        access = []
        with DB.lock:
            fleet_images = {s['location'].split('/', 1)[1]
                            for r in DB.d['releases'].values() for s in r['services'].values()}
        for scope in query.get('scope', []):
            kind, name, actions = scope.split(':')
            allowed = [a for a in actions.split(',') if a in grant]
            if subject != 'builder' and name not in fleet_images:
                allowed = []
            access.append({'name': name, 'type': kind, 'actions': allowed})
        now = int(time.time())
        claims = {'jti': str(uuidlib.uuid4()), 'nbf': now - 10, 'access': access, 'iat': now,
                  'exp': now + 14400, 'aud': query.get('service', [''])[0], 'iss': ISSUER}
        if subject:
            claims['sub'] = subject
        header = {'alg': 'ES256', 'typ': 'JWT', 'kid': KID}
        signing_input = (b64url(js_json(header)) + '.' + b64url(js_json(claims))).encode()
        r, s = decode_dss_signature(KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
        token = signing_input.decode() + '.' + b64url(sig)
        status, ctype, _ = recorded('81-auth-token-device-pull.json')
        return self.answer((status, ctype, js_json({'token': token})))

    # --- test control -----------------------------------------------------------------
    def control_get(self, p):
        with DB.lock:
            m = re.fullmatch(r'/_replay/device/([0-9a-f]+)', p)
            if m and m.group(1) in DB.d['devices']:
                d = dict(DB.d['devices'][m.group(1)])
                d.pop('logs')
                return self.answer((200, 'application/json', js_json(d)))
            m = re.fullmatch(r'/_replay/logs/([0-9a-f]+)', p)
            if m and m.group(1) in DB.d['devices']:
                return self.answer((200, 'application/json', js_json(DB.d['devices'][m.group(1)]['logs'])))
            if p == '/_replay/requests':
                return self.answer((200, 'application/json', js_json(DB.d['requests'])))
            if p == '/_replay/devices':
                return self.answer((200, 'application/json', js_json(sorted(DB.d['devices']))))
        return self.answer((404, 'text/plain', b'no such thing'))

    def control_post(self, p):
        body = self.json_body()
        with DB.lock:
            if p == '/_replay/release':
                commit = uuidlib.uuid4().hex
                services = {}
                for name, s in body['services'].items():
                    location, digest = s['image'].split('@', 1)
                    services[name] = {'id': DB.next_id(), 'image_id': DB.next_id(),
                                      'location': location, 'digest': digest,
                                      'composition': s.get('composition', {})}
                DB.d['releases'][commit] = {'id': DB.next_id(), 'status': 'success',
                                            'semver': body.get('semver'), 'services': services}
                if body.get('target', True):
                    DB.d['target'] = commit
                DB.save()
                return self.answer((201, 'application/json', js_json({'commit': commit})))
            if p == '/_replay/target':
                DB.d['target'] = body['commit']
            elif p == '/_replay/config':
                DB.d['config'].update(body)
            elif p == '/_replay/fault':
                DB.d['faults'] = body
            else:
                return self.answer((404, 'text/plain', b'no such thing'))
            DB.save()
            return self.answer((204, None, b''))


def main():
    global DB, ARGS, KEY, KID
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--db', required=True)
    ap.add_argument('--token-key', required=True, help='EC P-256 private key (PEM)')
    ap.add_argument('--builder-token', default='token_auth_builder_token')
    ARGS = ap.parse_args()
    with open(ARGS.token_key, 'rb') as f:
        KEY = serialization.load_pem_private_key(f.read(), password=None)
    KID = libtrust_kid(KEY.public_key())
    DB = Db(ARGS.db)
    httpd = ThreadingHTTPServer(('127.0.0.1', ARGS.port), Handler)
    httpd.daemon_threads = True
    sys.stderr.write('replay of open-balena-api v43.7.7 on 127.0.0.1:%d\n' % ARGS.port)
    httpd.serve_forever()


if __name__ == '__main__':
    main()
