import 'reflect-metadata';
import { launch } from '@thorax/observability';
import { preprocessService } from './service';

void launch(preprocessService, process.env);
