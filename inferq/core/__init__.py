"""The core both sides share: names, settings, errors, the job contract, row rules,
model files, the chunk and image formats, and the Celery configuration.

Workers (``worker``) and producers (``producer``) import from here, never from each
other; nothing here imports them, the command line or TensorFlow.
"""
