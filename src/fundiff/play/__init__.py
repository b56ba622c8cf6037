"""The playground: a local web app for Part A (``fundiff play``), an optional extra (``pip install "fundiff[play]"``).

:mod:`~fundiff.play.ops` holds the operations without any web framework, :mod:`~fundiff.play.drawing` turns the
page's drawings into files, :mod:`~fundiff.play.app` is the Gradio page and :mod:`~fundiff.play.serve` starts it.
"""
