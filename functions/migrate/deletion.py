"""`deleteMissing` of a migration run: the documents whose ids the source lacks, deleted (dry
run: listed) in atomic batches each with its own checkpoint, so the count is exact across
resumes."""

from __future__ import annotations

from typing import Any

from shared.errors import RunAborted


class MissingDeleter:
    """`deleteMissing`: delete (dry run: list) the documents whose ids the source lacks,
    in atomic batches each with its own checkpoint, so the count is exact across resumes."""

    def __init__(self, run: Any):
        """`run`: the run being finished (`run._Run`: its store, writer, limiter, seen ids)."""
        self.run = run
        self.db = run.db
        self.store = run.store
        self.collection = run.db.collection(run.options.collection)

    def execute(self) -> dict[str, Any]:
        """Delete (or list) every document whose id the source lacks; the account."""
        from google.cloud.firestore_v1.field_path import FieldPath

        recorded = self.store.load_deleted()
        already = set(recorded)
        sequence = len(list(self.store.deletions.list_documents(
            timeout=self.run.settings.migration_timeout_s)))
        count = len(recorded)
        last = None
        page_size = 500
        while True:
            query = (self.collection.select([FieldPath.document_id()])
                     .order_by(FieldPath.document_id()).limit(page_size))
            if last is not None:
                query = query.start_after(last)
            page = list(self.run.writer.call(lambda q=query: list(q.stream(
                timeout=self.run.settings.migration_timeout_s, retry=None))))
            if not page:
                break
            last = page[-1]
            doomed = [snap.id for snap in page
                      if hash(snap.id) not in self.run.seen and snap.id not in already]
            for chunk_start in range(0, len(doomed), self.run.batch_size):
                chunk = doomed[chunk_start:chunk_start + self.run.batch_size]
                count += self._commit(sequence, chunk)
                sequence += 1
            if len(page) < page_size:
                break
        return {"requested": True, "done": True, "count": count}

    def _commit(self, sequence: int, ids: list[str]) -> int:
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        for _ in range(3):
            batch = self.db.batch()
            if not self.run.options.dry_run:
                for doc_id in ids:
                    batch.delete(self.collection.document(doc_id),
                                 option=self.db.write_option(exists=True))
            batch.create(self.store.deletions.document(f"{sequence:08d}"),
                         {"ids": ids, "count": len(ids),
                          "committedAt": firestore.SERVER_TIMESTAMP})
            if ids and self.run.limiter is not None:
                self.run.limiter.acquire(len(ids))
            try:
                self.run.writer.call(lambda b=batch: b.commit(
                    timeout=self.run.settings.migration_timeout_s, retry=None))
                return len(ids)
            except (gexc.NotFound, gexc.FailedPrecondition, gexc.AlreadyExists):
                done = self.store.deletions.document(f"{sequence:08d}").get(
                    timeout=self.run.settings.migration_timeout_s)
                if done.exists:
                    return int(done.to_dict().get("count", 0))
                refs = [self.collection.document(doc_id) for doc_id in ids]
                present = {snap.id for snap in self.db.get_all(
                    refs, timeout=self.run.settings.migration_timeout_s) if snap.exists}
                ids = [doc_id for doc_id in ids if doc_id in present]
        raise RunAborted("delete_failed", "documents kept changing while they were deleted")
