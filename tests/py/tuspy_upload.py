"""Uploads one file with tuspy (the tus client for Python, from PyPI), unchanged: the way an
application uses it, with its URL storage so that a second run resumes the first.

    tuspy_upload.py ENDPOINT FILE STORAGE.json CHUNK_SIZE [--checksum]

Prints "URL <upload url>" once the upload exists and "DONE <offset>" at the end.
"""

import os
import sys

from tusclient import client
from tusclient.storage import filestorage


def main():
    endpoint, path, storage, chunk_size = sys.argv[1:5]
    checksum = "--checksum" in sys.argv[5:]
    tus = client.TusClient(endpoint)
    uploader = tus.uploader(
        path,
        chunk_size=int(chunk_size),
        metadata={"filename": os.path.basename(path)},
        store_url=True,
        url_storage=filestorage.FileStorage(storage),
        upload_checksum=checksum,
    )
    if not uploader.url:
        # What upload() does first when nothing is stored, done here to show the URL.
        uploader.set_url(uploader.create_url())
        uploader.offset = 0
    print("URL", uploader.url, flush=True)
    uploader.upload()
    print("DONE", uploader.offset, flush=True)


if __name__ == "__main__":
    main()
