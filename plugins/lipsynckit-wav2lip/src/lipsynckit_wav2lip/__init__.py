"""lipsynckit plugin: Wav2Lip (``wav2lip``, ``wav2lip_gan``) and its S3FD face detector (``s3fd``).

Modules: ``plugin`` / ``s3fd_plugin`` (entry points, data only, light to import), ``network`` (the
generator under the official parameter names), ``audio`` (the official mel front end without
librosa), ``s3fd`` (detector network and post-processing), ``runtime`` (the protocol methods),
``options`` (user options whose defaults reproduce official inference).
"""
