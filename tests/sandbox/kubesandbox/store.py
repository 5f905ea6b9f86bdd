"""In-memory object storage of one sandbox cluster: one global resourceVersion counter, per-resource
event history (the watch window) and watchers fed in commit order."""

import collections
import json
import threading
import time


def clone(obj):
    return json.loads(json.dumps(obj))


class Expired(Exception):
    def __init__(self, requested, oldest):
        super().__init__("too old resource version: %d (%d)" % (requested, oldest))
        self.requested = requested
        self.oldest = oldest


class Watcher:
    """Events for one watch stream; ``get`` blocks until one arrives, the stream is dropped or times out."""

    def __init__(self, store, resource, namespace):
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.events = collections.deque()
        self.cond = threading.Condition()
        self.dropped = False
        self.initial = 0
        self.start_rv = 0

    def push(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify()

    def drop(self):
        with self.cond:
            self.dropped = True
            self.cond.notify()

    def get(self, timeout):
        with self.cond:
            if not self.events and not self.dropped:
                self.cond.wait(timeout)
            if self.dropped:
                return "DROPPED"
            if self.events:
                return self.events.popleft()
            return None

    def close(self):
        self.store.remove_watcher(self)


class Store:
    def __init__(self, history=2000):
        self.lock = threading.RLock()
        self.rv = 100
        self.data = collections.defaultdict(dict)
        self.history_size = history
        self.history = collections.defaultdict(collections.deque)
        self.compacted = collections.defaultdict(int)
        self.watchers = collections.defaultdict(set)
        self.listeners = []

    # --- reads ---------------------------------------------------------------------------------
    def get(self, resource, namespace, name):
        with self.lock:
            return self.data[resource].get((namespace or "", name))

    def list(self, resource, namespace=None):
        with self.lock:
            items = self.data[resource]
            if namespace:
                keys = [k for k in items if k[0] == namespace]
            else:
                keys = list(items)
            keys.sort(key=lambda k: (k[0].encode("utf-8"), k[1].encode("utf-8")))
            return self.rv, [items[k] for k in keys]

    def list_at(self, resource, namespace, rv):
        """The objects of ``resource`` as they were at ``rv`` (undoing later events); raises Expired when the
        history no longer reaches back that far."""
        with self.lock:
            if rv < self.compacted[resource]:
                raise Expired(rv, self.compacted[resource])
            items = dict(self.data[resource])
            for event_rv, kind, obj, old in reversed(self.history[resource]):
                if event_rv <= rv:
                    break
                meta = obj["metadata"]
                key = (meta.get("namespace", ""), meta["name"])
                if kind == "ADDED":
                    items.pop(key, None)
                else:
                    items[key] = old
            keys = [k for k in items if not namespace or k[0] == namespace]
            keys.sort(key=lambda k: (k[0].encode("utf-8"), k[1].encode("utf-8")))
            return [items[k] for k in keys]

    def wait_for_rv(self, rv, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.rv >= rv:
                    return True
            time.sleep(0.05)
        return False

    def current_rv(self):
        with self.lock:
            return self.rv

    # --- writes --------------------------------------------------------------------------------
    def _record(self, resource, kind, obj, old=None):
        history = self.history[resource]
        history.append((self.rv, kind, obj, old))
        while len(history) > self.history_size:
            dropped = history.popleft()
            self.compacted[resource] = dropped[0]
        for watcher in list(self.watchers[resource]):
            watcher.push((self.rv, kind, obj, old))
        for listener in self.listeners:
            listener(resource, kind, obj, old)

    def create(self, resource, obj):
        """Store a new object (the caller checked absence under ``lock``); returns it with its RV."""
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.data[resource][key] = obj
            self._record(resource, "ADDED", obj)
            return obj

    def update(self, resource, obj):
        with self.lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            old = self.data[resource].get(key)
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.data[resource][key] = obj
            self._record(resource, "MODIFIED", obj, old)
            return obj

    def delete(self, resource, namespace, name):
        with self.lock:
            old = self.data[resource].pop((namespace or "", name), None)
            if old is None:
                return None
            self.rv += 1
            final = dict(old)
            final["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
            self._record(resource, "DELETED", final, old)
            return final

    # --- watch ---------------------------------------------------------------------------------
    def watch(self, resource, namespace, since):
        """A Watcher fed with events after ``since`` (None: the current state as ADDED first)."""
        with self.lock:
            watcher = Watcher(self, resource, namespace)
            if since is None:
                _rv, items = self.list(resource, namespace)
                for obj in items:
                    watcher.events.append((int(obj["metadata"]["resourceVersion"]), "ADDED", obj, None))
            else:
                oldest = self.compacted[resource]
                if since < oldest:
                    raise Expired(since, oldest)
                for event in self.history[resource]:
                    if event[0] > since:
                        watcher.events.append(event)
            watcher.initial = len(watcher.events) if since is None else 0
            watcher.start_rv = self.rv
            self.watchers[resource].add(watcher)
            return watcher

    def remove_watcher(self, watcher):
        with self.lock:
            self.watchers[watcher.resource].discard(watcher)

    def drop_watchers(self):
        with self.lock:
            count = 0
            for watchers in self.watchers.values():
                for watcher in list(watchers):
                    watcher.drop()
                    count += 1
                watchers.clear()
            return count

    def compact_rv(self, resource):
        with self.lock:
            return self.compacted[resource]
