"""The ``mosaic-gym`` command line (:mod:`.main`) and the commands that compose the whole
package: the demo (train and evaluate) and playing an episode at the terminal."""
