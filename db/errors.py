"""The root of jinro's errors, and the errors of the db package.

Every error jinro raises on purpose is a `JinroError`, so an edge (a CLI command, the API's problem mapping)
catches that one class: it prints or answers the message, which always says what to do next. `db` is the bottom
layer, so every package can import the root from here while `db` still imports nothing of ours. The whole tree:

    JinroError                      (db.errors) root; the edges catch it
    ├── DatabaseError               (db.errors) the database or the vector index cannot be used
    │   ├── DatabaseUnavailable     the database URL cannot be reached or opened (db.engine.create_db_engine)
    │   └── VectorIndexError        the vector index is missing, unreadable, or built for another model or
    │                               dimension; an unknown JINRO_VECTOR_STORE (db.vectorstore, db.pgvector,
    │                               ingest.knowledge)
    ├── IngestError                 (ingest.errors) documents cannot be ingested
    │   ├── SourceError             a source path cannot be read at all (missing, unreadable directory or file)
    │   │   ├── UnsupportedSource   a file in a format `ingest docs` does not read, or a binary file: skipped
    │   │   └── EmptySource         a file with no text (or only a header row): skipped
    │   ├── RecordError             one record of a source is malformed (`file:line`); the rest is still loaded
    │   ├── EmbeddingModelMismatch  the index was built with another embedding model than the configured one
    │   └── EmbedderUnavailable     the configured embedding model cannot be loaded
    ├── AssistantError              (assistant.errors) the assistant cannot handle a request
    │   ├── EvalDataError           an evaluation file is missing or one of its lines is malformed (`file:line`)
    │   ├── SafetyModelError        the shipped crisis classifier is missing, unreadable or out of date
    │   ├── QuestionTypeModelError  the shipped question-type classifier is missing or unreadable
    │   ├── PromptError             the prompt cannot be rendered (bad turn roles, no question, no answer turn)
    │   │   └── PromptBudgetError   even with every cuttable part removed the prompt exceeds the context window
    │   ├── GenerationError         a generator cannot be loaded or cannot produce text (bad spec, server down)
    │   │   └── ModelServerError    an OpenAI-compatible model server answered with an HTTP error
    │   ├── RetrievalError          a query cannot be answered (empty query, bad mode, unreadable lexicon,
    │   │   │                       an index of another embedder)
    │   │   └── EmptyKnowledge      the knowledge DB holds no documents yet (or the eval corpus ingested none)
    │   ├── NotFound                a thing the caller named does not exist for this caller (API: 404)
    │   │   ├── SessionNotFound     no such session for this caller, or it expired
    │   │   ├── MessageNotFound     no such message in this session (feedback on a message)
    │   │   ├── ReviewNotFound      no such review in the queue
    │   │   ├── DocumentNotFound    no such document in the knowledge DB
    │   │   └── JobNotFound         no such background ingest job
    │   ├── InvalidInput            a request that cannot be carried out as asked (API: 422)
    │   │   └── NotAnAnswer         feedback or an edit aimed at a message that is not a counselor answer
    │   └── ConcurrentTurn          a turn could not be stored because of concurrent writes, even after retries
    └── FinetuneError               (finetune.errors) the fine-tuning pipeline cannot go on (missing input, no
        │                           example left, non-empty output directory, malformed prepared file)
        ├── ConfigError             a training config (YAML or --set override) is invalid
        └── DataFormatError         one record of an input file is malformed (`file:line`); it is skipped

Private control-flow exceptions that never leave their module, and the API's HTTP-only `Problem`
(`assistant/api/problems.py`), are not part of the tree.
"""

from __future__ import annotations


class JinroError(Exception):
    """Root of every error jinro raises on purpose; its message says what went wrong and what to do next."""


class DatabaseError(JinroError):
    """Base class of db errors."""


class DatabaseUnavailable(DatabaseError):
    """The database URL cannot be reached or opened."""


class VectorIndexError(DatabaseError):
    """The vector index file is missing, unreadable, or built for another model or dimension."""
