from mimrec.cli import main
from mimrec.runtime import end_process

end_process(main())
